import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type AimdOptions, type AimdSignal, type AimdState, initialAimd, observe } from "./aimd.ts";

/** Feeds `n` samples of one kind at the current limit and epoch. */
function feed(
  state: AimdState,
  options: AimdOptions,
  n: number,
  signal: AimdSignal | ((k: number) => AimdSignal),
  latencyMs = 50,
): AimdState {
  let s = state;
  for (let k = 0; k < n; k++) {
    const kind = typeof signal === "function" ? signal(k) : signal;
    s = observe(s, { signal: kind, latencyMs, inFlight: s.limit, epoch: s.epoch }, options);
  }
  return s;
}

describe("AIMD concurrency policy", () => {
  const options = { max: 150 };

  it("starts at 8 (or the max when lower) and doubles on clean windows until the max", () => {
    expect(initialAimd({ max: 4 }).limit).toBe(4);
    let s = initialAimd(options);
    expect(s.limit).toBe(8);
    s = feed(s, options, 20, "ok");
    expect(s.limit).toBe(16);
    s = feed(s, options, 20, "ok");
    expect(s.limit).toBe(32);
    s = feed(s, options, 32, "ok");
    s = feed(s, options, 64, "ok");
    s = feed(s, options, 128, "ok");
    expect(s.limit).toBe(150);
  });

  it("cuts the limit by 0.7 at the first 429, then grows by one a window", () => {
    let s = feed(initialAimd(options), options, 20, "ok"); // 16
    s = feed(s, options, 4, (k) => (k === 3 ? "throttled" : "ok"));
    expect(s.limit).toBe(11);
    expect(s.slowStart).toBe(false);
    s = feed(s, options, 20, "ok");
    expect(s.limit).toBe(12);
  });

  it("tolerates a few random 503s but backs off when they pass 10% of a window", () => {
    let s = feed(initialAimd(options), options, 20, "ok"); // 16
    s = feed(s, options, 20, (k) => (k < 2 ? "failed" : "ok")); // 10%: tolerated
    expect(s.limit).toBe(32);
    s = feed(s, options, 3, "failed"); // 3 of a 32-window: under 10%
    expect(s.limit).toBe(32);
    s = feed(s, options, 1, "failed"); // the 4th: over, acted on at once
    expect(s.limit).toBe(22);
  });

  it("does not decrease twice for answers to requests sent before the first decrease", () => {
    let s = feed(initialAimd(options), options, 20, "ok"); // 16
    const oldEpoch = s.epoch;
    s = feed(s, options, 1, "throttled"); // 11 at once, new epoch
    for (let k = 0; k < 20; k++) {
      s = observe(
        s,
        { signal: "throttled", latencyMs: 50, inFlight: 11, epoch: oldEpoch },
        options,
      );
    }
    expect(s.limit).toBe(12);
  });

  it("holds the limit while latency is over twice the baseline, and when the work does not use it", () => {
    let s = feed(initialAimd(options), options, 20, "ok", 50); // 16, baseline 50
    s = feed(s, options, 20, "ok", 150);
    expect(s.limit).toBe(16);
    s = observe(s, { signal: "ok", latencyMs: 50, inFlight: 1, epoch: s.epoch }, options);
    for (let k = 0; k < 19; k++) {
      s = observe(s, { signal: "ok", latencyMs: 50, inFlight: 2, epoch: s.epoch }, options);
    }
    expect(s.limit).toBe(16);
  });

  it("keeps the limit within [1, max] whatever the answers (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200 }),
        fc.array(
          fc.record({
            signal: fc.constantFrom<AimdSignal>("ok", "throttled", "failed"),
            latencyMs: fc.nat(10_000),
            inFlight: fc.integer({ min: 1, max: 200 }),
            stale: fc.boolean(),
          }),
          { maxLength: 600 },
        ),
        (max, samples) => {
          let s = initialAimd({ max });
          for (const x of samples) {
            s = observe(s, { ...x, epoch: x.stale ? s.epoch - 1 : s.epoch }, { max });
            expect(s.limit).toBeGreaterThanOrEqual(1);
            expect(s.limit).toBeLessThanOrEqual(max);
          }
        },
      ),
    );
  });

  it("settles at or below a source's limit, most of the time (simulated source, property)", () => {
    // A source that answers 429 to whatever is in flight above its capacity.
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 120 }), (capacity) => {
        let s = initialAimd(options);
        let over = 0;
        const rounds = 400;
        for (let round = 0; round < rounds; round++) {
          const sent = s.limit;
          if (round >= rounds / 2 && sent > capacity) over++;
          const epoch = s.epoch;
          for (let k = 0; k < sent; k++) {
            const signal = k < capacity ? "ok" : "throttled";
            s = observe(s, { signal, latencyMs: 20, inFlight: sent, epoch }, options);
          }
        }
        // The sawtooth touches capacity + 1 once per cycle, never more.
        expect(s.limit).toBeLessThanOrEqual(capacity + 1);
        expect(over / (rounds / 2)).toBeLessThan(0.5);
      }),
      { numRuns: 30 },
    );
  });
});
