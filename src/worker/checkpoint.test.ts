import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { ResultRow } from "../shared/schemas/cells.ts";
import type { Checkpoint } from "../shared/schemas/shard.ts";
import {
  appendChunk,
  checkpointFloorMs,
  chunkListProblem,
  mergeColumns,
  PrefixTracker,
  progressAfter,
  resumeFrom,
  type ShardProgress,
  smoothWriteMs,
} from "./checkpoint.ts";

const row = (i: number, extra: Partial<ResultRow> = {}): ResultRow => ({
  i,
  r: { v: i },
  ...extra,
});

/**
 * A shard `[start, end)` whose rows (some indices may be missing: gaps) finish in a random
 * order, with checkpoints taken at random moments, then the final piece.
 */
const scenario = fc
  .record({
    start: fc.nat(1000),
    length: fc.nat(60),
    gapSeed: fc.array(fc.boolean(), { minLength: 60, maxLength: 60 }),
    orderSeed: fc.array(fc.nat(), { minLength: 60, maxLength: 60 }),
    checkpointAfter: fc.array(fc.boolean(), { minLength: 60, maxLength: 60 }),
  })
  .map(({ start, length, gapSeed, orderSeed, checkpointAfter }) => {
    const end = start + length;
    const indices: number[] = [];
    for (let k = 0; k < length; k++) if (!gapSeed[k]) indices.push(start + k);
    // A permutation of the rows: the order they finish in.
    const order = indices
      .map((index, k) => ({ index, key: orderSeed[k] ?? 0 }))
      .sort((a, b) => a.key - b.key)
      .map((x) => x.index);
    return { start, end, indices, order, checkpointAfter };
  });

describe("PrefixTracker (property)", () => {
  it("hands out pieces that tile the shard, each row exactly once, the cursor always at the first unfinished row", () => {
    fc.assert(
      fc.property(scenario, ({ start, end, indices, order, checkpointAfter }) => {
        const tracker = new PrefixTracker(indices, end);
        let progress: ShardProgress = { cursor: start, chunks: [], columns: [], errorRows: 0 };
        const finished = new Set<number>();
        const written: number[] = [];
        order.forEach((index, k) => {
          tracker.record([row(index)]);
          finished.add(index);
          if (checkpointAfter[k]) {
            const piece = tracker.peek(progress.cursor);
            if (piece) {
              progress = progressAfter(progress, piece, `k${piece.start}`);
              tracker.advance(piece);
              written.push(...piece.rows.map((r) => r.i));
              // Every row before the cursor is finished and written; the cursor row is not finished.
              const firstUnfinished = indices.find((i) => !finished.has(i)) ?? end;
              expect(progress.cursor).toBe(firstUnfinished);
            }
          }
        });
        expect(tracker.complete).toBe(true);
        const last = tracker.peek(progress.cursor);
        if (last) {
          progress = progressAfter(progress, last, `k${last.start}`);
          tracker.advance(last);
          written.push(...last.rows.map((r) => r.i));
        }
        expect(tracker.peek(progress.cursor)).toBeUndefined();
        expect(written).toEqual(indices);
        if (end > start) {
          expect(progress.cursor).toBe(end);
          expect(chunkListProblem(progress.chunks, start, end)).toBeUndefined();
        }
      }),
    );
  });

  it("is idempotent: recording a row twice changes nothing", () => {
    const tracker = new PrefixTracker([0, 1, 2], 3);
    tracker.record([row(1)]);
    tracker.record([row(1), row(0)]);
    expect(tracker.pending).toBe(2);
    expect(tracker.peek(0)).toMatchObject({ start: 0, end: 2, nextPosition: 2 });
  });

  it("cuts at the first unfinished row while later rows are done", () => {
    const tracker = new PrefixTracker([10, 11, 12, 13], 14);
    tracker.record([row(10), row(12), row(13)]);
    const piece = tracker.peek(10);
    expect(piece).toMatchObject({ start: 10, end: 11 });
    expect(piece?.rows.map((r) => r.i)).toEqual([10]);
    tracker.advance(piece!);
    expect(tracker.peek(11)).toBeUndefined();
    tracker.record([row(11)]);
    expect(tracker.peek(11)).toMatchObject({ start: 11, end: 14 });
  });
});

describe("chunkListProblem", () => {
  const c = (start: number, end: number) => ({ key: `${start}`, start, end });
  it.each([
    [[c(0, 100), c(100, 200)], 0, 200, undefined],
    [[], 5, 5, undefined],
    [[c(7, 7)], 7, 7, undefined],
    [[c(0, 100), c(150, 200)], 0, 200, /does not start at 100/],
    [[c(0, 100), c(50, 200)], 0, 200, /does not start at 100/],
    [[c(0, 100)], 0, 200, /not at the cursor 200/],
    [[c(10, 100)], 0, 100, /does not start at 0/],
    [[c(0, 0), c(0, 10)], 0, 10, /empty/],
    [[], 10, 5, /before the shard start/],
  ])("%o from %i to %i → %s", (chunks, start, cursor, problem) => {
    const found = chunkListProblem(chunks, start, cursor);
    if (problem === undefined) expect(found).toBeUndefined();
    else expect(found).toMatch(problem);
  });

  it("appendChunk refuses a chunk that does not follow", () => {
    expect(() => appendChunk([c(0, 10)], c(11, 20))).toThrow(/does not follow/);
    expect(appendChunk([c(0, 10)], c(10, 20))).toHaveLength(2);
  });
});

describe("resumeFrom", () => {
  const shard = { operationId: "op", shardId: "s000000", start: 0, end: 500 };
  const checkpoint = (over: Partial<Checkpoint> = {}): Checkpoint => ({
    v: 1,
    operationId: "op",
    shardId: "s000000",
    attemptId: "a1",
    cursor: 200,
    chunks: [
      { key: "k0", start: 0, end: 100 },
      { key: "k1", start: 100, end: 200 },
    ],
    columns: ["extra"],
    errorRows: 3,
    updatedAt: new Date(0).toISOString(),
    ...over,
  });

  it("starts fresh without a checkpoint, with the declared columns", () => {
    expect(resumeFrom(undefined, shard, ["a"])).toEqual({
      progress: { cursor: 0, chunks: [], columns: ["a"], errorRows: 0 },
    });
  });

  it("resumes at the cursor with the chunks, error rows and columns (declared first)", () => {
    const { progress, ignored } = resumeFrom(checkpoint(), shard, ["a"]);
    expect(ignored).toBeUndefined();
    expect(progress).toEqual({
      cursor: 200,
      chunks: checkpoint().chunks,
      columns: ["a", "extra"],
      errorRows: 3,
    });
  });

  it.each([
    [{ shardId: "s000001" }, /belongs to op\/s000001/],
    [{ cursor: 600 }, /past the shard end/],
    [{ cursor: 300 }, /not at the cursor 300/],
    [{ chunks: [{ key: "k1", start: 100, end: 200 }] }, /does not start at 0/],
  ])("ignores an inconsistent checkpoint (%o)", (over, why) => {
    const { progress, ignored } = resumeFrom(checkpoint(over), shard, []);
    expect(ignored).toMatch(why);
    expect(progress.cursor).toBe(0);
    expect(progress.chunks).toEqual([]);
  });
});

describe("progressAfter", () => {
  it("moves the cursor, appends the chunk, adds error rows and new columns", () => {
    const next = progressAfter(
      { cursor: 0, chunks: [], columns: ["a"], errorRows: 1 },
      {
        start: 0,
        end: 3,
        rows: [
          { i: 0, r: { b: 1 } },
          { i: 1, e: "bad" },
          { i: 2, r: { a: 1, c: 2 } },
        ],
        nextPosition: 3,
      },
      "key",
    );
    expect(next).toEqual({
      cursor: 3,
      chunks: [{ key: "key", start: 0, end: 3 }],
      columns: ["a", "b", "c"],
      errorRows: 2,
    });
    expect(mergeColumns(["x", "y"], ["y", "z", "x"])).toEqual(["x", "y", "z"]);
  });
});

describe("checkpoint write budget", () => {
  it("spaces row-count checkpoints so writes take at most the budget, within everySeconds", () => {
    expect(checkpointFloorMs(undefined, 0.01, 15_000)).toBe(0);
    expect(checkpointFloorMs(20, 0.01, 15_000)).toBe(2000);
    expect(checkpointFloorMs(500, 0.01, 15_000)).toBe(15_000);
    expect(checkpointFloorMs(20, 1, 15_000)).toBe(20);
  });

  it("smooths the write time so one slow write weighs a fifth", () => {
    expect(smoothWriteMs(undefined, 30)).toBe(30);
    expect(smoothWriteMs(10, 110)).toBe(30);
  });
});
