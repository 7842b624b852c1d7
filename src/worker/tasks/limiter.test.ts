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

describe("Limiter slots taken by hand", () => {
  it("tryAcquire takes a free slot, never one a waiter is queued for, and release hands it on", async () => {
    const limiter = new Limiter(1);
    expect(limiter.tryAcquire()).toBe(true);
    expect(limiter.tryAcquire()).toBe(false);
    let admitted = false;
    const waiting = limiter.acquire().then(() => {
      admitted = true;
    });
    limiter.release();
    // The slot went to the waiter, in order: a caller arriving now does not jump the queue.
    expect(limiter.tryAcquire()).toBe(false);
    await waiting;
    expect(admitted).toBe(true);
    expect(limiter.active).toBe(1);
    limiter.release();
    expect(limiter.active).toBe(0);
  });

  it("acquire rejects with the signal's reason when it aborts while waiting", async () => {
    const limiter = new Limiter(1);
    expect(limiter.tryAcquire()).toBe(true);
    const controller = new AbortController();
    const waiting = limiter.acquire(controller.signal);
    controller.abort(new Error("shard stopped"));
    await expect(waiting).rejects.toThrow("shard stopped");
    limiter.release();
    expect(limiter.active).toBe(0);
    expect(limiter.tryAcquire()).toBe(true);
  });
});

/** Lets every queued promise callback run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("Limiter with a changing limit", () => {
  it("admits waiters when the limit rises, and no one until under a lowered limit", async () => {
    const limiter = new Limiter(2);
    const gates = Array.from({ length: 5 }, () => deferred());
    const started: number[] = [];
    const runs = gates.map((g, k) =>
      limiter.run(async () => {
        started.push(k);
        await g.promise;
      }),
    );
    await Promise.resolve();
    expect(started).toEqual([0, 1]);
    limiter.setLimit(3);
    await settle();
    expect(started).toEqual([0, 1, 2]);
    limiter.setLimit(1);
    gates[0]!.resolve();
    await runs[0];
    await settle();
    // Two holders left, limit 1: nobody new.
    expect(started).toEqual([0, 1, 2]);
    gates[1]!.resolve();
    gates[2]!.resolve();
    await Promise.all([runs[1], runs[2]]);
    await settle();
    expect(started).toEqual([0, 1, 2, 3]);
    expect(limiter.active).toBe(1);
    gates[3]!.resolve();
    gates[4]!.resolve();
    await Promise.all(runs);
    expect(() => limiter.setLimit(0)).toThrow(RangeError);
  });
});
