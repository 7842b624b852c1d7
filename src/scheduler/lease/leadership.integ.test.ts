/**
 * Leadership against the local S3 server's conditional writes: one active scheduler, standbys
 * that take over only after the holder's lease lapses (or is released), and a holder that
 * stops acting the moment it loses the lease.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalAws, startLocalAws } from "../../../test/support/local-aws.ts";
import { systemClock } from "../../shared/clock.ts";
import { LeaseLostError } from "../../shared/errors.ts";
import { createLogger, silentLogger } from "../../shared/logger.ts";
import { ObjectStore } from "../../shared/object-store.ts";
import type { SchedulerLease } from "../../shared/schemas/lease.ts";
import { Leadership, type Tenure } from "./leadership.ts";
import { acquiredLease, SchedulerLeaseRecord, tenuresOf } from "./scheduler-lease.ts";

let aws: LocalAws;
let bucketSeq = 0;
beforeAll(async () => {
  aws = await startLocalAws("lease");
});
afterAll(async () => {
  await aws?.close();
});

/** A fresh bucket-like namespace per test: a store on its own bucket. */
async function freshRecord(): Promise<{ record: SchedulerLeaseRecord; store: ObjectStore }> {
  const { CreateBucketCommand } = await import("@aws-sdk/client-s3");
  const bucket = `lease-t${++bucketSeq}`;
  await aws.clients.s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const store = new ObjectStore({ s3: aws.clients.s3 }, { bucket });
  return { record: new SchedulerLeaseRecord({ store }), store };
}

/** A record whose reads and writes fail while `cut` is set: a scheduler cut off from S3. */
class CutOffRecord extends SchedulerLeaseRecord {
  cut = false;
  override read(signal?: AbortSignal) {
    if (this.cut) return Promise.reject(new Error("connect ECONNREFUSED (cut off)"));
    return super.read(signal);
  }
  override write(lease: SchedulerLease, etag: string | undefined, signal?: AbortSignal) {
    if (this.cut) return Promise.reject(new Error("connect ECONNREFUSED (cut off)"));
    return super.write(lease, etag, signal);
  }
}

/** Work that records when its tenure began and ended (its signal aborted) and when it was stopped. */
function recordingWork() {
  const events: { began?: number; ended?: number; stopped?: number; reason?: unknown } = {};
  let tenure: Tenure | undefined;
  let onBegan!: () => void;
  let onEnded!: () => void;
  const began = new Promise<void>((r) => {
    onBegan = r;
  });
  const ended = new Promise<void>((r) => {
    onEnded = r;
  });
  const work = (t: Tenure) => {
    tenure = t;
    events.began = Date.now();
    onBegan();
    t.signal.addEventListener("abort", () => {
      events.ended = Date.now();
      events.reason = t.signal.reason;
      onEnded();
    });
    return {
      stop: async () => {
        events.stopped = Date.now();
      },
    };
  };
  return { work, events, began, ended, tenure: () => tenure };
}

const DURATION = 1_500;
const RENEW = 500;

describe("scheduler leadership (local S3)", () => {
  it("of schedulers started at once on one bucket, exactly one is active", async () => {
    const { record } = await freshRecord();
    const all = Array.from({ length: 5 }, (_, i) => ({
      leadership: new Leadership(
        { record, clock: systemClock, logger: silentLogger() },
        { holder: `h${i}`, durationMs: 60_000 },
      ),
      run: recordingWork(),
    }));
    const states = await Promise.all(all.map((s) => s.leadership.start(s.run.work)));
    expect(states.filter((s) => s === "active")).toHaveLength(1);
    expect(states.filter((s) => s === "standby")).toHaveLength(4);
    const lease = (await record.read())!.lease;
    const winner = all.find((s) => s.leadership.state === "active")!;
    expect(lease.holder).toBe(winner.leadership.holder);
    expect(lease.history).toEqual([]);
    for (const s of all) if (s !== winner) await s.leadership.stop();
    await winner.leadership.stop();
  });

  it("a holder cut off from S3 stops acting before a standby takes over after the lapse", async () => {
    const { record, store } = await freshRecord();
    const aRecord = new CutOffRecord({ store });
    const a = new Leadership(
      { record: aRecord, clock: systemClock, logger: silentLogger() },
      { holder: "a", durationMs: DURATION, renewEveryMs: RENEW },
    );
    const b = new Leadership(
      { record, clock: systemClock, logger: silentLogger() },
      { holder: "b", durationMs: DURATION, renewEveryMs: RENEW },
    );
    const aWork = recordingWork();
    const bWork = recordingWork();
    expect(await a.start(aWork.work)).toBe("active");
    expect(await b.start(bWork.work)).toBe("standby");
    // Renewals keep a the holder for several durations: b stands by all along.
    await waitFor(async () => (await record.read())!.lease.renewals >= 3 * (DURATION / RENEW));
    expect(b.state).toBe("standby");
    expect((await record.read())!.lease.holder).toBe("a");

    aRecord.cut = true;
    await aWork.ended;
    expect(aWork.events.reason).toBeInstanceOf(LeaseLostError);
    expect(() => aWork.tenure()!.check()).toThrow(LeaseLostError);
    await bWork.began;
    // a stopped acting (its signal aborted, its work stopped) before b began.
    expect(aWork.events.ended!).toBeLessThan(bWork.events.began!);
    expect(aWork.events.stopped!).toBeLessThanOrEqual(bWork.events.began!);
    const lease = (await record.read())!.lease;
    const [first, second] = tenuresOf(lease);
    expect([first?.holder, second?.holder]).toEqual(["a", "b"]);
    // b's tenure began after a's last expiry, on the record itself.
    expect(Date.parse(second!.acquiredAt)).toBeGreaterThanOrEqual(Date.parse(first!.expiresAt));

    // Reconnected, a stands by behind b.
    aRecord.cut = false;
    await waitFor(() => a.state === "standby");
    await b.stop();
    await a.stop();
  });

  it("a renewal that finds another writer (412) ends the tenure at once; the loser stands by", async () => {
    const { record } = await freshRecord();
    const lines: { msg: string; activeHolder?: string }[] = [];
    const logger = createLogger({
      level: "debug",
      destination: {
        write: (line: string) => {
          lines.push(JSON.parse(line));
          return true;
        },
      } as unknown as NodeJS.WritableStream,
    });
    const a = new Leadership(
      { record, clock: systemClock, logger },
      { holder: "a", durationMs: DURATION, renewEveryMs: RENEW },
    );
    const aWork = recordingWork();
    expect(await a.start(aWork.work)).toBe("active");
    const read = (await record.read())!;
    // Another writer replaces the record (as a takeover would).
    const rogue = acquiredLease("rogue", Date.now(), 60_000, read.lease);
    expect(await record.write(rogue, read.etag)).toBeDefined();
    await aWork.ended;
    expect(String(aWork.events.reason)).toMatch(/another scheduler holds the lease \(rogue\)/);
    expect(aWork.events.stopped).toBeDefined();
    // It looks at the record again and again as a standby, and never writes over it.
    await waitFor(
      () =>
        lines.filter((l) => l.msg.startsWith("standing by") && l.activeHolder === "rogue").length >=
        3,
    );
    expect(a.state).toBe("standby");
    expect((await record.read())!.lease.holder).toBe("rogue");
    // Reported at info once, then at debug.
    const standing = lines.filter((l) => l.msg.startsWith("standing by")) as { level?: number }[];
    expect(standing.map((l) => l.level)).toEqual([30, ...standing.slice(1).map(() => 20)]);
    await a.stop();
  });

  it("hands the lease on at once when its work cannot start, instead of holding it idle", async () => {
    const { record } = await freshRecord();
    const a = new Leadership(
      { record, clock: systemClock, logger: silentLogger() },
      { holder: "a", durationMs: 120_000, renewEveryMs: 1_000 },
    );
    const b = new Leadership(
      { record, clock: systemClock, logger: silentLogger() },
      { holder: "b", durationMs: 120_000, renewEveryMs: 1_000 },
    );
    const bWork = recordingWork();
    expect(await b.start(bWork.work)).toBe("active");
    let attempts = 0;
    // Once b has stopped, a acquires the released lease, fails to start, and releases it.
    await b.stop();
    const started = a.start(() => {
      attempts++;
      throw new Error("cannot start the loops");
    });
    expect(await started).toBe("standby");
    expect(attempts).toBeGreaterThanOrEqual(1);
    await a.stop();
    const after = (await record.read())!.lease;
    expect(after.holder).toBe("a");
    expect(after.released).toBe(true);
  }, 20_000);

  it("stop releases the lease: a standby takes over at once, not after the duration", async () => {
    const { record } = await freshRecord();
    const long = 120_000;
    const a = new Leadership(
      { record, clock: systemClock, logger: silentLogger() },
      { holder: "a", durationMs: long, renewEveryMs: 1_000 },
    );
    const b = new Leadership(
      { record, clock: systemClock, logger: silentLogger() },
      { holder: "b", durationMs: long, renewEveryMs: 1_000 },
    );
    const aWork = recordingWork();
    const bWork = recordingWork();
    expect(await a.start(aWork.work)).toBe("active");
    expect(await b.start(bWork.work)).toBe("standby");
    await a.stop();
    expect(aWork.events.stopped).toBeDefined();
    // Within the test's timeout, far below the 120 s duration: only the release allows it.
    await bWork.began;
    expect(aWork.events.stopped!).toBeLessThanOrEqual(bWork.events.began!);
    const lease = (await record.read())!.lease;
    expect(tenuresOf(lease).map((t) => t.holder)).toEqual(["a", "b"]);
    await b.stop();
  }, 20_000);
});

/** Polls `condition` until it holds (an event this test cannot subscribe to). */
async function waitFor(
  condition: () => boolean | Promise<boolean>,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}
