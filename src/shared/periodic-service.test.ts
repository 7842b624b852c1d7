import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { FakeClock } from "../../test/support/fake-clock.ts";
import { createLogger } from "./logger.ts";
import {
  type Pass,
  PeriodicService,
  type PeriodicServiceOptions,
  pauseAfter,
} from "./periodic-service.ts";

/** A logger whose JSON lines are kept for assertions. */
function capture() {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: createLogger({ level: "debug", destination }), lines };
}

/** A promise resolved from outside. */
function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

function service(pass: Pass, options: Partial<PeriodicServiceOptions> = {}) {
  const clock = new FakeClock();
  const { logger, lines } = capture();
  const svc = new PeriodicService(
    { clock, logger },
    { name: "test loop", intervalMs: 1000, ...options },
    pass,
  );
  return { svc, clock, lines };
}

describe("PeriodicService", () => {
  it("goes idle → running → draining → stopped and refuses a second start", async () => {
    const inPass = deferred();
    const release = deferred();
    const { svc } = service(async () => {
      inPass.resolve();
      await release.promise;
    });
    expect(svc.state).toBe("idle");
    svc.start();
    expect(svc.state).toBe("running");
    expect(() => svc.start()).toThrow("test loop cannot start: it is running");
    await inPass.promise;
    const stopped = svc.stop();
    expect(svc.state).toBe("draining");
    release.resolve();
    await stopped;
    expect(svc.state).toBe("stopped");
    expect(() => svc.start()).toThrow(/it is stopped/);
  });

  it("runs a pass every intervalMs of the injected clock", async () => {
    let passes = 0;
    const { svc, clock } = service(async () => {
      passes++;
    });
    svc.start();
    await clock.advance(0);
    expect(passes).toBe(1);
    await clock.advance(999);
    expect(passes).toBe(1);
    await clock.advance(1);
    expect(passes).toBe(2);
    await clock.advance(3000);
    expect(passes).toBe(5);
    await svc.stop();
  });

  it("never starts a pass while the previous one runs: the pause counts from its end", async () => {
    let running = 0;
    let most = 0;
    let passes = 0;
    const slow = deferred();
    const { svc, clock } = service(async () => {
      passes++;
      running++;
      most = Math.max(most, running);
      if (passes === 1) await slow.promise;
      running--;
    });
    svc.start();
    await clock.advance(5000);
    expect(passes).toBe(1);
    expect(clock.pending).toBe(0); // no pause scheduled while the pass runs
    slow.resolve();
    await clock.advance(0);
    expect(clock.pending).toBe(1);
    await clock.advance(1000);
    expect(passes).toBe(2);
    expect(most).toBe(1);
    await svc.stop();
  });

  it("stop aborts the pass in flight and waits for it to unwind, then drains", async () => {
    const events: string[] = [];
    const inPass = deferred();
    const unwind = deferred();
    const { svc, lines } = service(
      async (signal) => {
        inPass.resolve();
        await new Promise<void>((resolve) =>
          signal.addEventListener("abort", () => resolve(), { once: true }),
        );
        events.push("pass aborted");
        await unwind.promise;
        events.push("pass unwound");
      },
      {
        drain: async () => {
          events.push(`drain (${svc.state})`);
        },
      },
    );
    svc.start();
    await inPass.promise;
    const stopped = svc.stop().then(() => events.push("stop resolved"));
    // A second stop while draining resolves with the first.
    const again = svc.stop().then(() => events.push("second stop resolved"));
    expect(svc.signal.aborted).toBe(true);
    await new Promise((resolve) => setImmediate(resolve));
    expect(events).toEqual(["pass aborted"]);
    unwind.resolve();
    await Promise.all([stopped, again]);
    expect(events).toEqual([
      "pass aborted",
      "pass unwound",
      "drain (draining)",
      "stop resolved",
      "second stop resolved",
    ]);
    expect(svc.state).toBe("stopped");
    expect(lines.map((l) => l.msg)).toEqual(["test loop started", "test loop stopped"]);
  });

  it("logs a failed pass and goes on with the next", async () => {
    let passes = 0;
    const { svc, clock, lines } = service(async () => {
      passes++;
      if (passes === 1) throw new Error("S3 said no");
    });
    svc.start({ intervalMs: 1000 });
    await clock.advance(0);
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 50,
        msg: "test loop pass failed; retrying",
        failures: 1,
        retryInMs: 1000,
        err: expect.objectContaining({ message: "S3 said no" }),
      }),
    );
    await clock.advance(1000);
    expect(passes).toBe(2);
    expect(svc.state).toBe("running");
    await svc.stop();
    expect(lines[0]).toMatchObject({ msg: "test loop started", intervalMs: 1000 });
  });

  it("backs off after failures in a row when told to, and resets after a success", async () => {
    const at: number[] = [];
    let passes = 0;
    const { svc, clock, lines } = service(
      async (signal) => {
        passes++;
        at.push(clock.now());
        if (passes <= 4) throw new Error(`failure ${passes}`);
        // A long poll: the next pass follows this one at once, without a pause.
        if (passes === 6) await new Promise((resolve) => signal.addEventListener("abort", resolve));
      },
      { intervalMs: 0, errorBackoff: { firstMs: 1000, maxMs: 3000 }, errorLevel: "warn" },
    );
    const start = clock.now();
    svc.start();
    await clock.advance(0);
    await clock.advance(1000); // pass 2
    await clock.advance(2000); // pass 3
    await clock.advance(3000); // pass 4 (capped)
    await clock.advance(3000); // pass 5 succeeds; then passes follow at once
    expect(passes).toBe(6);
    expect(clock.pending).toBe(0);
    await svc.stop();
    expect(at.map((t) => t - start)).toEqual([0, 1000, 3000, 6000, 9000, 9000]);
    const warned = lines.filter((l) => l.level === 40).map((l) => l.retryInMs);
    expect(warned).toEqual([1000, 2000, 3000, 3000]);
  });

  it("wake cuts the pause short; during a pass it makes the next follow at once", async () => {
    let passes = 0;
    const gate = deferred();
    const { svc, clock } = service(
      async () => {
        passes++;
        if (passes === 2) await gate.promise;
      },
      { intervalMs: 60_000 },
    );
    svc.start();
    await clock.advance(0);
    expect(passes).toBe(1);
    svc.wake();
    await clock.advance(0);
    expect(passes).toBe(2);
    svc.wake(); // during pass 2
    gate.resolve();
    await clock.advance(0);
    expect(passes).toBe(3);
    expect(clock.pending).toBe(1); // back to the long pause
    await svc.stop();
  });

  it("logs a drain that fails and stops anyway", async () => {
    const { svc, lines } = service(async () => {}, {
      drain: () => Promise.reject(new Error("flush failed")),
    });
    svc.start();
    await svc.stop();
    expect(svc.state).toBe("stopped");
    expect(lines).toContainEqual(
      expect.objectContaining({ level: 50, msg: "test loop: draining failed" }),
    );
  });

  it("does nothing when stopped before it started", async () => {
    let passes = 0;
    const { svc } = service(async () => {
      passes++;
    });
    await svc.stop();
    expect(svc.state).toBe("idle");
    expect(passes).toBe(0);
  });
});

describe("pauseAfter", () => {
  it.each([
    [0, 500, undefined, 500],
    [3, 500, undefined, 500],
    [0, 0, { firstMs: 1000, maxMs: 30_000 }, 0],
    [1, 0, { firstMs: 1000, maxMs: 30_000 }, 1000],
    [2, 0, { firstMs: 1000, maxMs: 30_000 }, 2000],
    [6, 0, { firstMs: 1000, maxMs: 30_000 }, 30_000],
  ])("after %i failures (interval %i, backoff %o): %i ms", (failures, interval, backoff, ms) => {
    expect(pauseAfter(failures, interval, backoff)).toBe(ms);
  });
});
