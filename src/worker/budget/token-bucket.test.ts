import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FakeClock } from "../../../test/support/fake-clock.ts";
import { type BucketRate, TokenBucket } from "./token-bucket.ts";

/** Starts `n` takes; returns the clock times at which each was granted. */
function takeMany(bucket: TokenBucket, clock: FakeClock, n: number, signal: AbortSignal) {
  const at: number[] = [];
  const all = Array.from({ length: n }, () =>
    bucket.take(signal).then(() => {
      at.push(clock.now());
    }),
  );
  return { at, all };
}

describe("TokenBucket", () => {
  it("grants at the rate, in arrival order, starting empty", async () => {
    const clock = new FakeClock({ start: 0 });
    const bucket = new TokenBucket(clock, { rate: () => ({ perSecond: 10, burst: 1 }) });
    const { at, all } = takeMany(bucket, clock, 5, new AbortController().signal);
    await clock.advance(1000);
    await Promise.all(all);
    expect(at).toEqual([100, 200, 300, 400, 500]);
  });

  it("applies a new rate to the next grant, and waits while the rate is 0", async () => {
    const clock = new FakeClock({ start: 0 });
    let rate: BucketRate = { perSecond: 0, burst: 1 };
    const bucket = new TokenBucket(clock, { rate: () => rate });
    const { at, all } = takeMany(bucket, clock, 3, new AbortController().signal);
    await clock.advance(1000);
    expect(at).toEqual([]);
    rate = { perSecond: 4, burst: 1 };
    await clock.advance(1000);
    await Promise.all(all);
    // The first look after the change sees 0 tokens (time spent at rate 0 earned nothing).
    expect(at.length).toBe(3);
    expect(at[1]! - at[0]!).toBe(250);
    expect(at[2]! - at[1]!).toBe(250);
  });

  it("frees a waiter when its signal aborts, and the rest keep their order", async () => {
    const clock = new FakeClock({ start: 0 });
    const bucket = new TokenBucket(clock, { rate: () => ({ perSecond: 1, burst: 1 }) });
    const stop = new AbortController();
    const first = bucket.take(new AbortController().signal);
    const second = bucket.take(stop.signal);
    const third = bucket.take(new AbortController().signal);
    stop.abort(new Error("shard stopped"));
    await expect(second).rejects.toThrow("shard stopped");
    await clock.advance(2000);
    await Promise.all([first, third]);
    expect(bucket.granted).toBe(2);
  });

  it("never grants more than rate × t + burst in any window (property)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 1, max: 10 }),
        fc.array(fc.integer({ min: 0, max: 400 }), { minLength: 1, maxLength: 30 }),
        async (perSecond, burst, pauses) => {
          const clock = new FakeClock({ start: 0 });
          const bucket = new TokenBucket(clock, { rate: () => ({ perSecond, burst }) });
          const at: number[] = [];
          const signal = new AbortController().signal;
          const takes: Array<Promise<void>> = [];
          for (const pause of pauses) {
            await clock.advance(pause);
            for (let k = 0; k < 3; k++)
              takes.push(bucket.take(signal).then(() => void at.push(clock.now())));
          }
          await clock.advance(100_000);
          await Promise.all(takes);
          for (const start of at) {
            for (const windowMs of [100, 1000, 5000]) {
              const inWindow = at.filter((t) => t >= start && t < start + windowMs).length;
              expect(inWindow).toBeLessThanOrEqual(
                Math.floor((perSecond * windowMs) / 1000) + burst,
              );
            }
          }
        },
      ),
      { numRuns: 40 },
    );
  });
});
