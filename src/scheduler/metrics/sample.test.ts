/** The metrics sample: a pure function of the per-operation observations and the time. */
import { describe, expect, it } from "vitest";
import { type OperationObservation, sampleOf } from "./sample.ts";

const H = 3_600_000;
const NOW = 10 * H;

function op(over: Partial<OperationObservation>): OperationObservation {
  return {
    id: "op-1",
    tenant: "acme",
    status: "running",
    rows: { total: 100, done: 0, failed: 0 },
    shards: { pending: 0, running: 0, done: 0, failed: 0 },
    attempts: { running: 0, completed: 0, interrupted: 0, lost: 0, error: 0 },
    fallbacks: 0,
    stragglerCopies: 0,
    instances: [],
    ...over,
  };
}

describe("metrics sample", () => {
  it("adds up operations, rows, reclaims, fleet events and live instances (each once)", () => {
    const shared = {
      id: "i-1",
      market: "spot",
      role: "worker",
      type: "t",
      state: "running",
      launchedAtMs: NOW - H,
      sinceMs: NOW - H,
    } as const;
    const s = sampleOf(
      [
        op({
          rows: { total: 100, done: 40, failed: 3 },
          shards: { pending: 2, running: 1, done: 1, failed: 0 },
          attempts: { running: 1, completed: 1, interrupted: 2, lost: 1, error: 0 },
          fallbacks: 1,
          stragglerCopies: 2,
          instances: [shared, { ...shared, id: "i-2", market: "on-demand", role: "straggler" }],
        }),
        op({
          id: "op-2",
          status: "succeeded",
          finishedAtMs: NOW - 2 * H,
          rows: { total: 10, done: 10, failed: 0 },
          shards: { pending: 0, running: 0, done: 1, failed: 0 },
          instances: [shared, { ...shared, id: "i-3", state: "terminated", sinceMs: NOW - 2 * H }],
          costUsd: 1.5,
        }),
      ],
      NOW,
      { recentMs: H, hourlyPrice: (market) => (market === "spot" ? 0.03 : 0.1) },
    );
    expect(s.operations).toEqual([
      { tenant: "acme", status: "running", count: 1 },
      { tenant: "acme", status: "succeeded", count: 1 },
    ]);
    // Shards of unfinished operations only.
    expect(s.shards).toEqual({ pending: 2, running: 1, done: 1, failed: 0 });
    expect(s.rows).toEqual({ done: 50, failed: 3 });
    expect(s.reclaims).toEqual({ notice: 2, noNotice: 1 });
    expect([s.fallbacks, s.stragglerCopies]).toEqual([1, 2]);
    expect(s.instances).toEqual([
      { market: "spot", role: "worker", count: 1 },
      { market: "on-demand", role: "straggler", count: 1 },
    ]);
    // Unreported: an hour of spot and of on-demand so far; reported: the report's total.
    expect(s.costUsd).toHaveLength(1);
    expect(s.costUsd[0]!.usd).toBeCloseTo(0.03 + 0.1 + 1.5, 10);
    // i-1 counted once although two records name it.
    expect(s.hourlyUsd).toBeCloseTo(0.13, 10);
    // op-2 ended two hours ago: past recentMs, no per-operation series.
    expect(s.perOperation.map((p) => p.id)).toEqual(["op-1"]);
  });
});
