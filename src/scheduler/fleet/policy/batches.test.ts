import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isBatchTotal, roundUpToBatchTotal, splitIntoBatches, spotBatches } from "./batches.ts";

describe("spot batches", () => {
  it("splits the examples as documented", () => {
    const cases: [number, number[]][] = [
      [17, [6, 6, 5]],
      [12, [6, 6]],
      [10, [5, 5]],
      [11, [6, 5]],
      [5, [5]],
      [6, [6]],
      [7, [5, 5]],
      [8, [5, 5]],
      [9, [5, 5]],
      [13, [5, 5, 5]],
      [14, [5, 5, 5]],
      [19, [5, 5, 5, 5]],
      [1, [5]],
      [24, [6, 6, 6, 6]],
    ];
    for (const [wanted, batches] of cases) expect(spotBatches(wanted, 1000)).toEqual(batches);
  });

  it("asks for less, with one smaller final batch, only when a cap leaves less", () => {
    expect(spotBatches(3, 3)).toEqual([3]);
    expect(spotBatches(17, 13)).toEqual([6, 6, 1]);
    expect(spotBatches(7, 8)).toEqual([6, 1]);
    expect(spotBatches(7, 10)).toEqual([5, 5]);
    expect(spotBatches(20, 0)).toEqual([]);
    expect(splitIntoBatches(8)).toEqual([6, 2]);
  });

  it("knows which totals are sums of fives and sixes", () => {
    const totals = Array.from({ length: 30 }, (_, n) => n).filter(isBatchTotal);
    expect(totals).toEqual([
      5, 6, 10, 11, 12, 15, 16, 17, 18, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29,
    ]);
    expect(roundUpToBatchTotal(19)).toBe(20);
  });

  it("property: every batch is 5 or 6 unless a cap forces one smaller last batch; never over the cap", () => {
    fc.assert(
      fc.property(fc.nat(500), fc.nat(500), (wanted, cap) => {
        const batches = spotBatches(wanted, cap);
        const sum = batches.reduce((a, b) => a + b, 0);
        expect(sum).toBeLessThanOrEqual(cap);
        expect(batches.every((b) => b > 0)).toBe(true);
        if (wanted === 0) {
          expect(batches).toEqual([]);
          return;
        }
        const rounded = roundUpToBatchTotal(wanted);
        if (rounded <= cap) {
          expect(batches.every((b) => b === 5 || b === 6)).toBe(true);
          expect(sum).toBe(rounded);
          expect(sum - wanted).toBeLessThan(5);
        } else {
          expect(sum).toBe(Math.min(wanted, cap));
          expect(batches.slice(0, -1).every((b) => b === 5 || b === 6)).toBe(true);
          expect(batches.filter((b) => b < 5).length).toBeLessThanOrEqual(1);
        }
      }),
    );
  });
});
