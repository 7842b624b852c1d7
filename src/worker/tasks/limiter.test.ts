import { describe, expect, it } from "vitest";
import { Limiter } from "./limiter.ts";

/** A promise and the function that resolves it. */
function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe("Limiter", () => {
  it("admits at most `limit` holders and serves waiters in order", async () => {
    const limiter = new Limiter(2);
    const gates = [deferred(), deferred(), deferred()];
    const started: number[] = [];
    const runs = gates.map((g, k) =>
      limiter.run(async () => {
        started.push(k);
        await g.promise;
        return k;
      }),
    );
    await Promise.resolve();
    expect(started).toEqual([0, 1]);
    expect(limiter.active).toBe(2);
    gates[1]!.resolve();
    await runs[1];
    await Promise.resolve();
    expect(started).toEqual([0, 1, 2]);
    gates[0]!.resolve();
    gates[2]!.resolve();
    expect(await Promise.all(runs)).toEqual([0, 1, 2]);
    expect(limiter.active).toBe(0);
  });

  it("drops a waiter whose signal aborts, without taking a slot", async () => {
    const limiter = new Limiter(1);
    const gate = deferred();
    const holder = limiter.run(() => gate.promise);
    const controller = new AbortController();
    const waiter = limiter.run(async () => "ran", controller.signal);
    controller.abort(new Error("gone"));
    await expect(waiter).rejects.toThrow("gone");
    gate.resolve();
    await holder;
    expect(limiter.active).toBe(0);
    expect(await limiter.run(async () => "next")).toBe("next");
  });

  it("releases the slot when the function throws", async () => {
    const limiter = new Limiter(1);
    await expect(limiter.run(async () => Promise.reject(new Error("x")))).rejects.toThrow("x");
    expect(limiter.active).toBe(0);
  });
});
