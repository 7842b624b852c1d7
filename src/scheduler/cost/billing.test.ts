import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { attributeInstance, processedRows, shardWaste, unionLength } from "./attribution.ts";
import { billedSeconds, billInstance, MIN_BILLED_SECONDS } from "./billing.ts";

const T0 = Date.parse("2026-01-01T00:00:00Z");

describe("billing", () => {
  it("bills a run under 60 s as 60 s", () => {
    const bill = billInstance(T0, T0 + 10_000, [{ from: T0, usdPerHour: 3.6 }]);
    expect(bill.billedSeconds).toBe(MIN_BILLED_SECONDS);
    expect(bill.usd).toBeCloseTo(0.06, 12);
    expect(bill.billedEnd).toBe(T0 + 60_000);
  });

  it("bills exactly 60 s as 60 s and 61 s as 61 s", () => {
    expect(billedSeconds(T0, T0 + 60_000)).toBe(60);
    expect(billedSeconds(T0, T0 + 61_000)).toBe(61);
    // A started second is billed.
    expect(billedSeconds(T0, T0 + 60_001)).toBe(61);
    // Clock skew: an end before the start is a zero-length run, billed the minimum.
    expect(billedSeconds(T0, T0 - 5_000)).toBe(60);
  });

  it("integrates a price that changes during the run, piecewise", () => {
    const prices = [
      { from: T0 + 3_600_000, usdPerHour: 2 },
      { from: T0 - 1000, usdPerHour: 1 }, // unsorted on purpose
    ];
    const bill = billInstance(T0, T0 + 2 * 3_600_000, prices);
    expect(bill.segments.map((s) => s.usdPerHour)).toEqual([1, 2]);
    expect(bill.usd).toBeCloseTo(3, 12);
  });

  it("prices the time before the first known point at the first price", () => {
    const bill = billInstance(T0, T0 + 3_600_000, [{ from: T0 + 1_800_000, usdPerHour: 1 }]);
    expect(bill.usd).toBeCloseTo(1, 12);
  });

  it("prices a change inside the minimum minute", () => {
    const bill = billInstance(T0, T0 + 1000, [
      { from: T0, usdPerHour: 3.6 },
      { from: T0 + 30_000, usdPerHour: 7.2 },
    ]);
    expect(bill.usd).toBeCloseTo(0.03 + 0.06, 12);
  });

  it("refuses an empty price history", () => {
    expect(() => billInstance(T0, T0 + 1000, [])).toThrow(/no price/);
  });

  it("sum of segments equals a flat-price bill for any split (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10 * 3_600_000 }),
        fc.array(fc.integer({ min: -3_600_000, max: 11 * 3_600_000 }), { maxLength: 6 }),
        fc.double({ min: 0, max: 10, noNaN: true }),
        (length, cuts, price) => {
          const flat = billInstance(T0, T0 + length, [{ from: T0, usdPerHour: price }]);
          const split = billInstance(T0, T0 + length, [
            { from: T0, usdPerHour: price },
            ...cuts.map((c) => ({ from: T0 + c, usdPerHour: price })),
          ]);
          expect(Math.abs(flat.usd - split.usd)).toBeLessThan(1e-9);
          expect(flat.usd).toBeGreaterThanOrEqual((price * 60) / 3600 - 1e-12);
        },
      ),
    );
  });
});

describe("attribution", () => {
  it("splits busy cost by shard-seconds and reports idle on its own", () => {
    // 100 s run at $36/h = $1. Busy 0-40 s (op a) and 20-60 s (op b): union 60 s, idle 40 s.
    const a = attributeInstance({ start: 0, billedEnd: 100_000, usd: 1 }, [
      { key: "x", operationId: "a", from: 0, to: 40_000 },
      { key: "y", operationId: "b", from: 20_000, to: 60_000 },
    ]);
    expect(a.idleUsd).toBeCloseTo(0.4, 12);
    expect(a.byOperation.get("a")).toBeCloseTo(0.3, 12);
    expect(a.byOperation.get("b")).toBeCloseTo(0.3, 12);
    expect(a.busySeconds).toBe(60);
    expect(a.idleSeconds).toBe(40);
  });

  it("counts an instance with no attempts as all idle", () => {
    const a = attributeInstance({ start: 0, billedEnd: 60_000, usd: 0.5 }, []);
    expect(a.idleUsd).toBe(0.5);
    expect(a.byOperation.size).toBe(0);
  });

  it("clips attempts to the billed run", () => {
    expect(
      unionLength(
        [
          { from: -10, to: 5 },
          { from: 3, to: 20 },
        ],
        0,
        10,
      ),
    ).toBe(10);
  });

  it("conserves cost: operations + idle = instance cost (property)", () => {
    const interval = fc
      .tuple(
        fc.integer({ min: -100_000, max: 4_000_000 }),
        fc.integer({ min: 0, max: 2_000_000 }),
        fc.constantFrom("op1", "op2", "op3"),
      )
      .map(([from, len, op]) => ({ from, to: from + len, operationId: op }));
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 3_600_000 }),
        fc.double({ min: 0, max: 1000, noNaN: true }),
        fc.array(interval, { maxLength: 20 }),
        (length, usd, intervals) => {
          const busy = intervals.map((b, i) => ({ ...b, key: `k${i}` }));
          const a = attributeInstance({ start: 0, billedEnd: length, usd }, busy);
          const ops = [...a.byOperation.values()].reduce((s, x) => s + x, 0);
          const byInterval = [...a.byInterval.values()].reduce((s, x) => s + x, 0);
          expect(Math.abs(ops + a.idleUsd - usd)).toBeLessThan(1e-9);
          expect(Math.abs(byInterval - ops)).toBeLessThan(1e-9);
          expect(a.idleUsd).toBeGreaterThanOrEqual(-1e-9);
          for (const v of a.byOperation.values()) expect(v).toBeGreaterThanOrEqual(0);
        },
      ),
    );
  });
});

describe("wasted work", () => {
  /** A shard whose attempts "a" and "b" ran in that order; `[rowsDone, cause, usd]` each. */
  const wasteOf = (
    committedRows: number,
    winnerAttemptId: "a" | "b",
    a: [number, string, number],
    b: [number, string, number],
  ) =>
    shardWaste({
      committedRows,
      winnerAttemptId,
      attempts: [
        { attemptId: "a", rowsDone: a[0], cause: a[1], usd: a[2] },
        { attemptId: "b", rowsDone: b[0], cause: b[1], usd: b[2] },
      ],
    });

  it("counts rows after the last checkpoint of a reclaimed attempt", () => {
    // 100 rows: the first attempt did 70 but only 50 were checkpointed; the second did 50.
    const w = wasteOf(100, "b", [70, "interrupted", 0.7], [50, "completed", 0.5]);
    expect(w.rowsRedone).toBe(20);
    expect(w.losingCopies).toBe(0);
    expect(w.usd).toBeCloseTo((1.2 * 20) / 120, 12);
  });

  it("counts a losing straggler copy whole", () => {
    const w = wasteOf(10, "a", [10, "completed", 1], [10, "completed", 1]);
    expect(w).toEqual({ rowsRedone: 10, losingCopies: 1, usd: 1 });
  });

  it("counts a hard-killed attempt at least by the rows the next one resumed after (start cursors)", () => {
    // 300 rows. A was SIGKILLed: its record still says 0 rows, but B resumed at 126. B was killed
    // too: its record says 100 rows, C resumed at 206, so B's 20 rows past its checkpoint were
    // run again by C. Counting A as 0 would hide them (0 + 100 + 94 < 300).
    const attempts = [
      { attemptId: "a", rowsDone: 0, cause: "running", usd: 0, startedAtMs: 1, startCursor: 0 },
      { attemptId: "b", rowsDone: 100, cause: "lost", usd: 0, startedAtMs: 2, startCursor: 126 },
      {
        attemptId: "c",
        rowsDone: 94,
        cause: "completed",
        usd: 0,
        startedAtMs: 3,
        startCursor: 206,
      },
    ];
    expect(processedRows(attempts)).toEqual([126, 100, 94]);
    expect(shardWaste({ committedRows: 300, winnerAttemptId: "c", attempts }).rowsRedone).toBe(20);
    // Without start cursors (records of an older release): the old, lower reading.
    const old = attempts.map(({ startCursor: _, ...a }) => a);
    expect(shardWaste({ committedRows: 300, winnerAttemptId: "c", attempts: old }).rowsRedone).toBe(
      0,
    );
  });

  it("finds no waste in a clean resume from a checkpoint", () => {
    const w = wasteOf(10, "b", [4, "interrupted", 0.4], [6, "completed", 0.6]);
    expect(w.rowsRedone).toBe(0);
    expect(w.usd).toBe(0);
  });
});
