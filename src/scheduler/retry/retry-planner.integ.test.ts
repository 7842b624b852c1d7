/**
 * The retry planner and the merger against the local S3 server: a retry runs exactly the rows
 * whose latest outcome is an error (a failed shard's rows, error rows), a scheduler that dies
 * after sending the messages but before recording the plan plans the same shards again (same
 * slices, the same messages: duplicates workers skip), a planned retry is never planned twice,
 * and the merge takes each row from the latest run that produced it: every row once; for an
 * xlsx operation (sheet XML slices) the retry slices are its failed rows read through slices.ts.
 */
import { Readable } from "node:stream";
import ExcelJS from "exceljs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalAws, startLocalAws } from "../../../test/support/local-aws.ts";
import { testManifest } from "../../../test/support/manifests.ts";
import { seedManifest } from "../../../test/support/seed-manifest.ts";
import { simpleXlsx } from "../../../test/support/workbooks.ts";
import { systemClock } from "../../shared/clock.ts";
import { keys, retryShardIdFor } from "../../shared/keys.ts";
import { silentLogger } from "../../shared/logger.ts";
import {
  decodeCell,
  encodeCell,
  type InputRow,
  type ResultRow,
} from "../../shared/schemas/cells.ts";
import { type Manifest, manifestSchema } from "../../shared/schemas/operation.ts";
import { type ShardMessage, shardDoneSchema } from "../../shared/schemas/shard.ts";
import { readInputRows, SliceContexts } from "../../shared/slices.ts";
import { mergeOperation } from "../merger.ts";
import { OperationLifecycle } from "../operation-lifecycle.ts";
import { splitOperation } from "../splitter.ts";
import { withNewRetry } from "./retry-plan.ts";
import { planRetry } from "./retry-planner.ts";

let aws: LocalAws;
beforeAll(async () => {
  aws = await startLocalAws("retry-planner");
});
afterAll(async () => {
  await aws?.close();
});

let op = "op-retry-plan";
const shards = [
  { id: "s000000", start: 0, end: 4 },
  { id: "s000001", start: 4, end: 8 },
];
const ndjson = (rows: unknown[]) => rows.map((r) => `${JSON.stringify(r)}\n`).join("");
const ok = (i: number, v: string): ResultRow => ({ i, r: { v: encodeCell(v) } });
const bad = (i: number): ResultRow => ({ i, e: "HTTP 503" });

async function commit(shardId: string, rows: ResultRow[], failed?: string) {
  const chunks = [];
  if (rows.length > 0) {
    const key = keys.chunk(op, shardId, rows[0]!.i, rows.at(-1)!.i + 1);
    await aws.store.putText(key, ndjson(rows));
    chunks.push({ key, start: rows[0]!.i, end: rows.at(-1)!.i + 1 });
  }
  await aws.store.putJson(keys.done(op, shardId), shardDoneSchema, {
    v: 1,
    operationId: op,
    shardId,
    attemptId: "a1",
    instanceId: "i-test",
    rows: rows.length,
    errorRows: rows.filter((r) => r.e !== undefined).length,
    columns: rows.length > 0 ? ["v"] : [],
    chunks,
    ...(failed === undefined ? {} : { failed }),
    committedAt: new Date().toISOString(),
  });
}

async function manifest(): Promise<Manifest> {
  const m = await aws.store.getJson(keys.manifest(op), manifestSchema);
  if (!m) throw new Error("no manifest");
  return m;
}

async function sliceRows(shardId: string): Promise<number[]> {
  const text = (await aws.store.getText(keys.shardInput(op, shardId))) ?? "";
  return text
    .split("\n")
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { i: number }).i);
}

/** Merges the operation as it stands: the result, and each output row as [input, v, error]. */
async function merge(signal: AbortSignal) {
  const merged = await mergeOperation(
    { store: aws.store, logger: silentLogger() },
    { manifest: await manifest(), signal },
  );
  const rows = await outputRows(merged.key);
  return { merged, rows: rows.slice(1).map((r) => [r[0], r[1] ?? null, r[2] ?? null]) };
}

async function outputRows(key: string): Promise<unknown[][]> {
  const body = await aws.store.getStream(key);
  const chunks: Buffer[] = [];
  for await (const chunk of body!) chunks.push(chunk as Buffer);
  const wb = new ExcelJS.Workbook();
  await wb.xlsx.load(Buffer.concat(chunks) as unknown as ArrayBuffer);
  const out: unknown[][] = [];
  wb.getWorksheet("results")!.eachRow((row) => {
    out.push((row.values as unknown[]).slice(1));
  });
  return out;
}

describe("planRetry and the merge of retried rows (local S3)", () => {
  it("plans failed rows once across a crash, then merges each row from its latest run", async () => {
    const lifecycle = new OperationLifecycle({
      store: aws.store,
      clock: systemClock,
      logger: silentLogger(),
    });
    const now = new Date().toISOString();
    for (const s of shards) {
      const lines = [];
      for (let i = s.start; i < s.end; i++) lines.push({ i, c: [encodeCell(`c${i}`)] });
      await aws.store.putText(keys.shardInput(op, s.id), ndjson(lines));
    }
    // The first run: row 1 failed with an error; shard s000001 was given up on (poison).
    await commit("s000000", [ok(0, "a"), bad(1), ok(2, "a"), ok(3, "a")]);
    await commit("s000001", [], "shard failed after 3 error attempts");
    await seedManifest(
      { store: aws.store, clock: systemClock },
      testManifest(op, {
        status: "running",
        headers: ["id"],
        rows: 8,
        shards,
        retries: withNewRetry(undefined, "succeeded-with-failures", {}, now),
      }),
    );

    const sent: ShardMessage[] = [];
    const queue = {
      enqueueShards: async (messages: readonly ShardMessage[]) => {
        sent.push(...messages);
      },
    };
    const deps = { store: aws.store, queue, clock: systemClock, logger: silentLogger() };
    const signal = AbortSignal.timeout(30_000);
    // The scheduler dies after sending, before the plan is recorded.
    const dying = {
      amend: async () => {
        throw new Error("scheduler killed");
      },
    };
    await expect(
      planRetry({ ...deps, lifecycle: dying }, await manifest(), signal),
    ).rejects.toThrow(/killed/);
    expect((await manifest()).retries?.[0]?.shards).toBeUndefined();
    const firstSend = [...sent];
    expect(firstSend).toEqual([
      { v: 1, operationId: op, shardId: "s000000-r1", start: 0, end: 4, retry: 1 },
      { v: 1, operationId: op, shardId: "s000001-r1", start: 4, end: 8, retry: 1 },
    ]);

    // Its successor plans the same shards: the same messages again, and the plan recorded.
    const planned = await planRetry({ ...deps, lifecycle }, await manifest(), signal);
    expect(sent.slice(firstSend.length)).toEqual(firstSend);
    expect(planned.map((s) => [s.id, s.rows])).toEqual([
      ["s000000-r1", 1],
      ["s000001-r1", 4],
    ]);
    expect(await sliceRows("s000000-r1")).toEqual([1]);
    expect(await sliceRows("s000001-r1")).toEqual([4, 5, 6, 7]);
    const recorded = (await manifest()).retries?.[0];
    expect(recorded).toMatchObject({ number: 1, rows: 5 });
    expect(recorded?.shards?.map((s) => s.id)).toEqual(["s000000-r1", "s000001-r1"]);

    // Planned already: a third pass sends nothing and records nothing new.
    const before = sent.length;
    await planRetry({ ...deps, lifecycle }, await manifest(), signal);
    expect(sent.length).toBe(before);

    // The retry's shards commit: row 7 fails again.
    await commit("s000000-r1", [ok(1, "retried")]);
    await commit("s000001-r1", [ok(4, "r"), ok(5, "r"), ok(6, "r"), bad(7)]);
    const { merged, rows } = await merge(signal);
    expect(merged).toMatchObject({ rows: 8, errorRows: 1, columns: ["v"] });
    expect(rows).toEqual([
      ["c0", "a", null],
      ["c1", "retried", null],
      ["c2", "a", null],
      ["c3", "a", null],
      ["c4", "r", null],
      ["c5", "r", null],
      ["c6", "r", null],
      ["c7", null, "HTTP 503"],
    ]);

    // A second retry runs only what is still failing: row 7.
    const m = await manifest();
    await seedManifest(
      { store: aws.store, clock: systemClock },
      {
        ...m,
        retries: withNewRetry(
          m.retries?.map((r) => ({ ...r, endedAt: now, status: "succeeded-with-failures" })),
          "succeeded-with-failures",
          {},
          now,
        ),
      },
    );
    const second = await planRetry({ ...deps, lifecycle }, await manifest(), signal);
    expect(second).toEqual([
      { id: retryShardIdFor("s000001", 2), base: "s000001", start: 4, end: 8, rows: 1 },
    ]);
    expect(await sliceRows("s000001-r2")).toEqual([7]);
  });

  it("an xlsx operation: retry slices hold the failed rows read from its sheet XML slices, the merge renders them", async () => {
    op = "op-retry-plan-xlsx";
    const lifecycle = new OperationLifecycle({
      store: aws.store,
      clock: systemClock,
      logger: silentLogger(),
    });
    const now = new Date().toISOString();
    // The real split: sheet XML slices, shared strings and the slice context.
    const base = testManifest(op, { status: "splitting", headers: ["id"], shardSize: 4 });
    const data = await simpleXlsx([["id"], ...Array.from({ length: 8 }, (_, i) => [`c${i}`])]);
    await aws.store.upload(base.input.key, Readable.from([data]));
    const split = await splitOperation(
      { store: aws.store, queue: aws.queue, logger: silentLogger() },
      { manifest: base, workQueueUrl: aws.resources.queues.work },
    );
    expect(split.shards).toEqual(shards);
    expect(await aws.store.getText(keys.shardSheetSlice(op, "s000000"))).toContain("<row");
    expect(await aws.store.getText(keys.shardInput(op, "s000000"))).toBeUndefined();

    await commit("s000000", [ok(0, "a"), bad(1), ok(2, "a"), bad(3)]);
    await commit("s000001", [], "shard failed after 3 error attempts");
    await seedManifest(
      { store: aws.store, clock: systemClock },
      testManifest(op, {
        status: "running",
        headers: ["id"],
        rows: 8,
        shards,
        retries: withNewRetry(undefined, "succeeded-with-failures", {}, now),
      }),
    );
    const queue = { enqueueShards: async () => {} };
    const signal = AbortSignal.timeout(30_000);
    const planned = await planRetry(
      { store: aws.store, queue, lifecycle, clock: systemClock, logger: silentLogger() },
      await manifest(),
      signal,
    );
    expect(planned.map((s) => [s.id, s.rows])).toEqual([
      ["s000000-r1", 2],
      ["s000001-r1", 4],
    ]);
    // A retry shard's slice is read as workers read it: no XML slice, so its NDJSON one.
    const read = async (shardId: string, start: number, end: number) => {
      const rows: InputRow[] = [];
      const contexts = new SliceContexts({ store: aws.store });
      const slice = { operationId: op, shardId, start, end };
      for await (const row of readInputRows(aws.store, contexts, slice, 1)) rows.push(row);
      return rows.map((r) => [r.i, decodeCell(r.c[0]!)]);
    };
    expect(await read("s000000-r1", 0, 4)).toEqual([
      [1, "c1"],
      [3, "c3"],
    ]);
    expect(await read("s000001-r1", 4, 8)).toEqual([
      [4, "c4"],
      [5, "c5"],
      [6, "c6"],
      [7, "c7"],
    ]);

    await commit("s000000-r1", [ok(1, "retried"), ok(3, "retried")]);
    await commit("s000001-r1", [ok(4, "r"), ok(5, "r"), bad(6), ok(7, "r")]);
    const { merged, rows } = await merge(signal);
    expect(merged).toMatchObject({ rows: 8, errorRows: 1, columns: ["v"] });
    expect(rows).toEqual([
      ["c0", "a", null],
      ["c1", "retried", null],
      ["c2", "a", null],
      ["c3", "retried", null],
      ["c4", "r", null],
      ["c5", "r", null],
      ["c6", null, "HTTP 503"],
      ["c7", "r", null],
    ]);
  });
});
