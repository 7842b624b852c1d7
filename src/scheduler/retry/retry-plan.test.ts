import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { retryShardIdFor } from "../../shared/keys.ts";
import type { ResultRow } from "../../shared/schemas/cells.ts";
import {
  currentShards,
  currentTask,
  type Manifest,
  openRetry,
} from "../../shared/schemas/operation.ts";
import {
  endedWithError,
  latestOutcomes,
  retryOptions,
  rowsToRetry,
  runsOf,
  withNewRetry,
  withRetryEnded,
  withRetryPlanned,
} from "./retry-plan.ts";

const ok = (i: number, v = "x"): ResultRow => ({ i, r: { v: { s: v } as never } });
const bad = (i: number, e = "503"): ResultRow => ({ i, e });

describe("latestOutcomes", () => {
  it("a later run replaces only the rows it ran; within a run the first result wins", () => {
    const { outcomes, duplicates } = latestOutcomes([
      { rows: [], results: [ok(0), bad(1), bad(2), ok(3)] },
      { rows: [], results: [ok(1, "retried"), ok(1, "dup"), bad(2, "still")] },
    ]);
    expect(duplicates).toBe(1);
    expect(outcomes.get(0)).toEqual({ result: ok(0) });
    expect(outcomes.get(1)).toEqual({ result: ok(1, "retried") });
    expect(outcomes.get(2)).toEqual({ result: bad(2, "still") });
    expect(outcomes.get(3)).toEqual({ result: ok(3) });
  });

  it("a failed run fails its rows; a later run can still succeed them", () => {
    const { outcomes } = latestOutcomes([
      { failed: "poison", rows: [0, 1, 2], results: [] },
      { rows: [], results: [ok(1)] },
    ]);
    expect(outcomes.get(0)).toEqual({ failed: "poison" });
    expect(outcomes.get(1)).toEqual({ result: ok(1) });
    expect(rowsToRetry({ start: 0, end: 4 }, outcomes)).toEqual([0, 2, 3]);
  });
});

describe("rowsToRetry", () => {
  it("rows with an error, a failed shard or no result at all; never a finished row", () => {
    const { outcomes } = latestOutcomes([{ rows: [], results: [ok(10), bad(11), ok(13)] }]);
    expect(rowsToRetry({ start: 10, end: 15 }, outcomes)).toEqual([11, 12, 14]);
    expect(endedWithError(undefined)).toBe(true);
    expect(endedWithError({ result: ok(1) })).toBe(false);
  });

  it("property: after any runs, a retry's rows are exactly the rows whose latest outcome is an error", () => {
    const outcome = fc.oneof(fc.constant("ok"), fc.constant("bad"), fc.constant("none"));
    fc.assert(
      fc.property(
        fc.array(fc.array(outcome, { minLength: 8, maxLength: 8 }), { maxLength: 4 }),
        (runs) => {
          const { outcomes } = latestOutcomes(
            runs.map((run) => ({
              rows: [],
              results: run.flatMap((o, i) => (o === "ok" ? [ok(i)] : o === "bad" ? [bad(i)] : [])),
            })),
          );
          const retried = rowsToRetry({ start: 0, end: 8 }, outcomes);
          for (let i = 0; i < 8; i++) {
            // The latest run that produced row i decides; no run: no result.
            const last = [...runs].reverse().find((r) => r[i] !== "none")?.[i];
            expect(retried.includes(i)).toBe(last !== "ok");
          }
        },
      ),
    );
  });
});

describe("retry records", () => {
  const now = "2026-12-03T16:00:00.000Z";
  const later = "2026-12-03T16:05:00.000Z";

  it("a new retry is numbered after the others and closes one left open", () => {
    const first = withNewRetry(undefined, "succeeded-with-failures", { retries: 5 }, now);
    expect(first).toEqual([{ number: 1, requestedAt: now, options: { retries: 5 } }]);
    const second = withNewRetry(first, "failed", {}, later);
    expect(second[0]).toMatchObject({ number: 1, endedAt: later, status: "failed" });
    expect(second[1]).toMatchObject({ number: 2, requestedAt: later });
  });

  it("planned once; ended with its status and error rows; closed ones are left as they are", () => {
    const shards = [{ id: "s000001-r1", base: "s000001", start: 10, end: 20, rows: 3 }];
    const planned = withRetryPlanned(withNewRetry([], "failed", {}, now), shards, now);
    expect(planned[0]).toMatchObject({ rows: 3, shards, plannedAt: now });
    // Planning again (a restarted scheduler) changes nothing.
    expect(withRetryPlanned(planned, [], later)).toEqual(planned);
    const ended = withRetryEnded(planned, "succeeded", later, 0);
    expect(ended?.[0]).toMatchObject({ endedAt: later, status: "succeeded", errorRows: 0 });
    expect(withRetryEnded(ended, "failed", "2027-01-01T00:00:00.000Z")).toEqual(ended);
    expect(withRetryEnded(undefined, "failed", later)).toBeUndefined();
  });

  it("options: the current ones with the changes on top; null goes back to the default", () => {
    expect(
      retryOptions({ url: "u", retries: 2, timeoutMs: 5 }, { retries: 6, timeoutMs: null }),
    ).toEqual({ url: "u", retries: 6 });
    expect(retryOptions({ url: "u" }, undefined)).toEqual({ url: "u" });
  });

  it("the runs of a shard: itself, then its retry shards in order", () => {
    const base = { id: "s000001", start: 10, end: 20 };
    const r1 = { id: retryShardIdFor("s000001", 1), base: "s000001", start: 10, end: 20, rows: 2 };
    const r2 = { id: retryShardIdFor("s000001", 2), base: "s000001", start: 10, end: 20, rows: 1 };
    const other = { id: "s000002-r1", base: "s000002", start: 20, end: 30, rows: 1 };
    expect(runsOf(base, [{ shards: [r1, other] }, {}, { shards: [r2] }]).map((r) => r.id)).toEqual([
      "s000001",
      "s000001-r1",
      "s000001-r2",
    ]);
  });
});

describe("the manifest's current shards and task", () => {
  const manifest = {
    v: 1,
    id: "op-1",
    status: "running",
    spec: {
      version: 1,
      task: { name: "transform", options: { module: "m" } },
      shardSize: 10,
      toleratedFailurePercent: 10,
    },
    input: { key: "k", filename: "f.csv", format: "csv", bytes: 1 },
    headers: ["a"],
    shards: [{ id: "s000000", start: 0, end: 10 }],
    createdAt: "2026-12-03T16:00:00.000Z",
    updatedAt: "2026-12-03T16:00:00.000Z",
  } satisfies Manifest;

  it("without a retry: the split's shards and the spec's task", () => {
    expect(currentShards(manifest)).toEqual(manifest.shards);
    expect(currentTask(manifest)).toMatchObject({ name: "transform", options: { module: "m" } });
    expect(openRetry(manifest)).toBeUndefined();
  });

  it("an open retry: none until planned, then its own; the task runs with its options", () => {
    const open = {
      ...manifest,
      retries: [
        { number: 1, requestedAt: manifest.createdAt, options: { module: "m", options: { x: 1 } } },
      ],
    };
    expect(currentShards(open)).toBeUndefined();
    expect(currentTask(open).options).toMatchObject({ module: "m", options: { x: 1 } });
    const shards = [{ id: "s000000-r1", base: "s000000", start: 0, end: 10, rows: 2 }];
    expect(currentShards({ ...open, retries: [{ ...open.retries[0]!, shards }] })).toEqual(shards);
    const ended = {
      ...open,
      retries: [{ ...open.retries[0]!, shards, endedAt: manifest.createdAt }],
    };
    expect(currentShards(ended)).toEqual(manifest.shards);
  });
});
