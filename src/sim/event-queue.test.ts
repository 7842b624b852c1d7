import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { EventQueue } from "./event-queue.ts";

describe("EventQueue", () => {
  it("pops every event in time order, ties in push order, across growth", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 50 }), { maxLength: 3000 }), (times) => {
        const q = new EventQueue();
        for (const [i, t] of times.entries()) q.push(t, i % 7, i, 3 * i);
        const popped: { t: number; i: number }[] = [];
        while (q.pop()) {
          expect(q.kind).toBe(q.a % 7);
          expect(q.b).toBe(3 * q.a);
          popped.push({ t: q.time, i: q.a });
        }
        const expected = times.map((t, i) => ({ t, i })).sort((x, y) => x.t - y.t || x.i - y.i);
        expect(popped).toEqual(expected);
        expect(q.size).toBe(0);
      }),
      { numRuns: 50 },
    );
  });

  it("interleaves pushes and pops", () => {
    const q = new EventQueue();
    q.push(10, 1, 1);
    q.push(5, 1, 2);
    expect(q.pop() && q.a).toBe(2);
    q.push(7, 1, 3);
    q.push(20, 1, 4);
    const order: number[] = [];
    while (q.pop()) order.push(q.a);
    expect(order).toEqual([3, 1, 4]);
  });
});
