import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { HeadObjectCommand } from "@aws-sdk/client-s3";
import ExcelJS from "exceljs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalAws, startLocalAws } from "../../test/support/local-aws.ts";
import { testManifest } from "../../test/support/manifests.ts";
import { xlsxBuffer } from "../../test/support/workbooks.ts";
import { NotReadyError } from "../shared/errors.ts";
import { keys } from "../shared/keys.ts";
import { silentLogger } from "../shared/logger.ts";
import { ObjectStore } from "../shared/object-store.ts";
import { type Cell, encodeCell, type InputRow, type ResultRow } from "../shared/schemas/cells.ts";
import type { Manifest, ShardRange } from "../shared/schemas/operation.ts";
import { checkpointSchema, type ShardDone, shardDoneSchema } from "../shared/schemas/shard.ts";
import {
  CANCELLED_ERROR,
  fitToExcel,
  MAX_CELL_TEXT,
  mergeOperation,
  mergeRow,
  unionColumns,
} from "./merger.ts";
import { splitOperation } from "./splitter.ts";

const when = new Date(Date.UTC(2024, 1, 3, 4, 5, 6));
const day = new Date(Date.UTC(2024, 1, 3));

describe("mergeRow and unionColumns", () => {
  it("puts result columns in union order, null where missing, and the error last", () => {
    const input: InputRow = { i: 4, c: ["a", 1] };
    expect(mergeRow(input, { i: 4, r: { b: true } }, ["a", "b"], 2)).toEqual({
      cells: ["a", 1, null, true],
      error: null,
    });
    expect(mergeRow(input, undefined, ["a"], 2)).toEqual({
      cells: ["a", 1, null],
      error: "no result for row",
    });
    expect(mergeRow(input, { i: 4, r: { a: 1 } }, ["a"], 2, "poison")).toEqual({
      cells: ["a", 1, null],
      error: "poison",
    });
    const noted: InputRow = {
      ...input,
      n: "row 6 has a value beyond the header's last column (B): C6, not processed",
    };
    expect(mergeRow(noted, { i: 4, r: { a: 1 } }, ["a"], 2)).toEqual({
      cells: ["a", 1, 1],
      error: noted.n,
    });
    expect(mergeRow(noted, { i: 4, e: "HTTP 500" }, ["a"], 2)).toEqual({
      cells: ["a", 1, null],
      error: `${noted.n}; HTTP 500`,
    });
    expect(
      unionColumns([{ columns: ["x", "y"] }, { columns: ["z", "x"] }, { columns: [] }]),
    ).toEqual(["x", "y", "z"]);
  });
});

describe("mergeOperation (local S3)", () => {
  let aws: LocalAws;

  beforeAll(async () => {
    aws = await startLocalAws("merger-test");
  });
  afterAll(async () => {
    await aws?.close();
  });

  const ndjson = (rows: unknown[]) => rows.map((r) => `${JSON.stringify(r)}\n`).join("");

  async function putSlice(op: string, shard: ShardRange, rows: Cell[][]) {
    const lines: InputRow[] = rows.map((cells, k) => ({
      i: shard.start + k,
      c: cells.map(encodeCell),
    }));
    await aws.store.putText(keys.shardInput(op, shard.id), ndjson(lines));
  }

  async function commit(
    op: string,
    shard: ShardRange,
    chunks: Array<{ start: number; end: number; rows: ResultRow[] }>,
    extra: Partial<ShardDone> = {},
  ) {
    const refs = [];
    for (const chunk of chunks) {
      const key = keys.chunk(op, shard.id, chunk.start, chunk.end);
      await aws.store.putText(key, ndjson(chunk.rows));
      refs.push({ key, start: chunk.start, end: chunk.end });
    }
    const columns = [
      ...new Set(chunks.flatMap((c) => c.rows.flatMap((r) => Object.keys(r.r ?? {})))),
    ];
    await aws.store.putJson(keys.done(op, shard.id), shardDoneSchema, {
      v: 1,
      operationId: op,
      shardId: shard.id,
      attemptId: "a1",
      instanceId: "i-test",
      rows: shard.end - shard.start,
      errorRows: 0,
      columns,
      chunks: refs,
      committedAt: new Date().toISOString(),
      ...extra,
    });
  }

  async function readResult(key: string): Promise<ExcelJS.Worksheet> {
    const body = await aws.store.getStream(key);
    if (!body) throw new Error(`no ${key}`);
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    const wb = new ExcelJS.Workbook();
    await wb.xlsx.load(Buffer.concat(chunks) as unknown as ArrayBuffer);
    const sheet = wb.getWorksheet("results");
    if (!sheet) throw new Error("no results sheet");
    return sheet;
  }

  function values(sheet: ExcelJS.Worksheet): unknown[][] {
    const out: unknown[][] = [];
    sheet.eachRow({ includeEmpty: true }, (row) => {
      const cells: unknown[] = [];
      for (let c = 1; c <= sheet.columnCount; c++) cells.push(row.getCell(c).value ?? null);
      out.push(cells);
    });
    return out;
  }

  it("merges a cancelled operation: committed shards, checkpointed rows, the rest `cancelled`", async () => {
    const op = "op-merge-cancelled";
    const shards: ShardRange[] = [
      { id: "s000000", start: 0, end: 2 },
      { id: "s000001", start: 2, end: 5 },
      { id: "s000002", start: 5, end: 7 },
    ];
    const manifest: Manifest = testManifest(op, { headers: ["id"], shards, rows: 7 });
    for (const shard of shards) {
      const ids = Array.from({ length: shard.end - shard.start }, (_, k) => [shard.start + k]);
      await putSlice(op, shard, ids);
    }
    await commit(op, shards[0]!, [
      { start: 0, end: 2, rows: [0, 1].map((i) => ({ i, r: { score: i * 10 } })) },
    ]);
    // Shard 1 was stopped after two rows: only its checkpoint tells (no done.json).
    const chunkKey = keys.chunk(op, shards[1]!.id, 2, 4);
    await aws.store.putText(chunkKey, ndjson([2, 3].map((i) => ({ i, r: { score: i * 10 } }))));
    await aws.store.putJson(keys.checkpoint(op, shards[1]!.id), checkpointSchema, {
      v: 1,
      operationId: op,
      shardId: shards[1]!.id,
      attemptId: "a2",
      cursor: 4,
      chunks: [{ key: chunkKey, start: 2, end: 4 }],
      columns: ["score"],
      errorRows: 0,
      updatedAt: new Date().toISOString(),
    });
    // Not cancelled, the merge still refuses an uncommitted shard.
    await expect(
      mergeOperation({ store: aws.store, logger: silentLogger() }, { manifest }),
    ).rejects.toThrow(NotReadyError);
    const result = await mergeOperation(
      { store: aws.store, logger: silentLogger() },
      { manifest, cancelled: true },
    );
    expect(result).toMatchObject({ rows: 7, errorRows: 3, columns: ["score"] });
    expect(values(await readResult(result.key))).toEqual([
      ["id", "score", "error"],
      [0, 0, null],
      [1, 10, null],
      [2, 20, null],
      [3, 30, null],
      [4, null, CANCELLED_ERROR],
      [5, null, CANCELLED_ERROR],
      [6, null, CANCELLED_ERROR],
    ]);
  });

  it("writes every input row once, in order, joined by row index: dedup, missing, failed, union of columns", async () => {
    const op = "op-merge-1";
    const shards: ShardRange[] = [
      { id: "s000000", start: 0, end: 3 },
      { id: "s000001", start: 3, end: 6 },
      { id: "s000002", start: 6, end: 8 },
    ];
    const manifest: Manifest = testManifest(op, { headers: ["id", "name"], shards, rows: 8 });
    await putSlice(op, shards[0]!, [
      [0, "zero"],
      [1, "one"],
      [2, "two"],
    ]);
    await putSlice(op, shards[1]!, [
      [3, "three"],
      [4, null],
      [5, "five"],
    ]);
    await putSlice(op, shards[2]!, [
      [6, "six"],
      [7, day],
    ]);
    // Two attempts' chunks overlap on row 1: the first one read wins.
    await commit(op, shards[0]!, [
      {
        start: 0,
        end: 2,
        rows: [
          { i: 0, r: { score: 10 } },
          { i: 1, r: { score: 11 } },
        ],
      },
      {
        start: 1,
        end: 3,
        rows: [
          { i: 1, r: { score: 99 } },
          { i: 2, e: "timeout" },
        ],
      },
    ]);
    // Row 4 has no result at all; row 5 has a result and an error.
    await commit(op, shards[1]!, [
      {
        start: 3,
        end: 6,
        rows: [
          { i: 3, r: { when: encodeCell(when), score: 13 } },
          { i: 5, r: { score: 15 }, e: "partial" },
        ],
      },
    ]);
    await commit(op, shards[2]!, [{ start: 6, end: 7, rows: [{ i: 6, r: { score: 16 } }] }], {
      failed: "poison shard: task crashed 10 times",
    });

    const result = await mergeOperation({ store: aws.store, logger: silentLogger() }, { manifest });
    expect(result).toEqual({
      key: keys.result(op),
      rows: 8,
      errorRows: 5,
      columns: ["score", "when"],
    });

    const sheet = await readResult(result.key);
    expect(values(sheet)).toEqual([
      ["id", "name", "score", "when", "error"],
      [0, "zero", 10, null, null],
      [1, "one", 11, null, null],
      [2, "two", null, null, "timeout"],
      [3, "three", 13, when, null],
      [4, null, null, null, "no result for row"],
      [5, "five", 15, null, "partial"],
      [6, "six", null, null, "poison shard: task crashed 10 times"],
      [7, day, null, null, "poison shard: task crashed 10 times"],
    ]);
    expect(sheet.getCell("D5").numFmt).toBe("yyyy-mm-dd hh:mm:ss");
    expect(sheet.getCell("B9").numFmt).toBe("yyyy-mm-dd");
    expect(sheet.getRow(1).font?.bold).toBe(true);
    // Cells share a few style objects (see addRow): a date's format and the header's bold
    // font must not leak into other cells.
    for (const ref of ["A2", "B2", "C5", "E4", "D9"]) {
      expect(sheet.getCell(ref).numFmt, ref).toBeUndefined();
      expect(sheet.getCell(ref).font?.bold, ref).toBeFalsy();
    }
    expect(sheet.getCell("B9").font?.bold).toBeFalsy();
    // Readable without resizing: dates fit (Excel shows ### when they do not), errors get room.
    expect(sheet.getColumn(4).width).toBeGreaterThanOrEqual(14);
    expect(sheet.getColumn(5).width).toBe(50);
  });

  it("refuses to merge before every shard has committed, and before the split", async () => {
    const op = "op-merge-pending";
    const shards: ShardRange[] = [
      { id: "s000000", start: 0, end: 1 },
      { id: "s000001", start: 1, end: 2 },
    ];
    await putSlice(op, shards[0]!, [["a"]]);
    await commit(op, shards[0]!, [{ start: 0, end: 1, rows: [{ i: 0, r: { x: 1 } }] }]);
    const manifest = testManifest(op, { headers: ["h"], shards });
    const err = await mergeOperation(
      { store: aws.store, logger: silentLogger() },
      { manifest },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotReadyError);
    expect((err as Error).message).toMatch(/shard s000001 .* has not committed/);
    expect(await aws.store.exists(keys.result(op))).toBe(false);

    await expect(
      mergeOperation(
        { store: aws.store, logger: silentLogger() },
        { manifest: testManifest("op-unsplit") },
      ),
    ).rejects.toBeInstanceOf(NotReadyError);
  });

  it("fails (and writes no result) when a chunk listed in done.json is missing", async () => {
    const op = "op-merge-lost-chunk";
    const shard: ShardRange = { id: "s000000", start: 0, end: 1 };
    await putSlice(op, shard, [["a"]]);
    await commit(op, shard, [{ start: 0, end: 1, rows: [{ i: 0 }] }]);
    await aws.store.deletePrefix(keys.chunksPrefix(op, shard.id));
    const manifest = testManifest(op, { headers: ["h"], shards: [shard] });
    await expect(
      mergeOperation({ store: aws.store, logger: silentLogger() }, { manifest }),
    ).rejects.toThrow(/chunks\/.* not found/);
    expect(await aws.store.exists(keys.result(op))).toBe(false);
  });

  it("stops with the upload's error when the upload fails midway, instead of waiting forever", async () => {
    const op = "op-merge-upload-fails";
    const shard: ShardRange = { id: "s000000", start: 0, end: 300 };
    const cells = Array.from({ length: 300 }, (_, k) => [k, randomBytes(1500).toString("base64")]);
    await putSlice(op, shard, cells);
    await commit(op, shard, [
      { start: 0, end: 300, rows: cells.map((_, i) => ({ i, r: { ok: true } })) },
    ]);
    // The upload reads one chunk, then fails: the writer fills the pipe and nobody drains it.
    class FailingUpload extends ObjectStore {
      override async upload(_key: string, body: Readable): Promise<void> {
        for await (const _chunk of body) break;
        throw new Error("S3 went away");
      }
    }
    const store = new FailingUpload({ s3: aws.clients.s3 }, { bucket: aws.resources.bucket });
    const manifest = testManifest(op, { headers: ["n", "blob"], shards: [shard] });
    await expect(mergeOperation({ store, logger: silentLogger() }, { manifest })).rejects.toThrow(
      "S3 went away",
    );
  });

  it("stops with the abort reason when aborted", async () => {
    const op = "op-merge-aborted";
    const shard: ShardRange = { id: "s000000", start: 0, end: 1 };
    await putSlice(op, shard, [["a"]]);
    await commit(op, shard, [{ start: 0, end: 1, rows: [{ i: 0 }] }]);
    const manifest = testManifest(op, { headers: ["h"], shards: [shard] });
    const controller = new AbortController();
    controller.abort(new Error("scheduler stopping"));
    await expect(
      mergeOperation(
        { store: aws.store, logger: silentLogger() },
        { manifest, signal: controller.signal },
      ),
    ).rejects.toThrow("scheduler stopping");
  });

  it("puts a row's input note (cells beyond the header) in its error cell, beside its results", async () => {
    const op = "op-merge-noted";
    const manifest = testManifest(op, { format: "csv", headers: ["id", "name"] });
    await aws.store.upload(
      manifest.input.key,
      Readable.from([Buffer.from("id,name\n1,a\n2,b,extra\n")]),
    );
    const split = await splitOperation(
      { store: aws.store, queue: aws.queue, logger: silentLogger() },
      { manifest, workQueueUrl: aws.resources.queues.work },
    );
    const [shard] = split.shards;
    await commit(op, shard!, [
      {
        start: 0,
        end: 2,
        rows: [
          { i: 0, r: { ok: true } },
          { i: 1, r: { ok: true } },
        ],
      },
    ]);
    const result = await mergeOperation(
      { store: aws.store, logger: silentLogger() },
      { manifest: { ...manifest, shards: split.shards, rows: split.rows } },
    );
    expect(result).toMatchObject({ rows: 2, errorRows: 1 });
    expect(values(await readResult(result.key))).toEqual([
      ["id", "name", "ok", "error"],
      [1, "a", true, null],
      [2, "b", true, "row 3 has a value beyond the header's last column (B): C3, not processed"],
    ]);
  });

  it("merges what the splitter wrote, streaming a multi-part upload of a workbook bigger than one part", async () => {
    const op = "op-merge-roundtrip";
    const rows = 2600;
    const data = await xlsxBuffer((wb) => {
      const ws = wb.addWorksheet("In");
      ws.addRow(["n", "blob"]);
      // Random text does not compress: the output passes the 5 MiB part size.
      for (let k = 0; k < rows; k++) ws.addRow([k, randomBytes(2400).toString("base64")]);
    });
    const manifest = testManifest(op, { headers: ["n", "blob"], shardSize: 1000 });
    await aws.store.upload(manifest.input.key, Readable.from([data]));
    const split = await splitOperation(
      { store: aws.store, queue: aws.queue, logger: silentLogger() },
      { manifest, workQueueUrl: aws.resources.queues.work },
    );
    for (const shard of split.shards) {
      const results: ResultRow[] = [];
      for (let i = shard.start; i < shard.end; i++) results.push({ i, r: { double: i * 2 } });
      const mid = Math.floor((shard.start + shard.end) / 2);
      // Overlapping chunks, as two workers racing on one shard would leave them.
      await commit(op, shard, [
        { start: shard.start, end: mid + 5, rows: results.slice(0, mid + 5 - shard.start) },
        { start: mid, end: shard.end, rows: results.slice(mid - shard.start) },
      ]);
    }
    const smallParts = new ObjectStore(
      { s3: aws.clients.s3 },
      { bucket: aws.resources.bucket, partSize: 5 * 1024 * 1024 },
    );
    const result = await mergeOperation(
      { store: smallParts, logger: silentLogger() },
      { manifest: { ...manifest, shards: split.shards, rows: split.rows } },
    );
    expect(result).toMatchObject({ rows, errorRows: 0, columns: ["double"] });
    const head = await aws.clients.s3.send(
      new HeadObjectCommand({ Bucket: aws.resources.bucket, Key: result.key }),
    );
    expect(head.ContentLength).toBeGreaterThan(5 * 1024 * 1024); // so it went up in several parts

    const sheet = await readResult(result.key);
    expect(sheet.rowCount).toBe(rows + 1);
    const firstColumn: number[] = [];
    const doubles: number[] = [];
    sheet.eachRow((row, n) => {
      if (n === 1) return;
      firstColumn.push(row.getCell(1).value as number);
      doubles.push(row.getCell(3).value as number);
    });
    expect(firstColumn).toEqual(Array.from({ length: rows }, (_, k) => k));
    expect(doubles).toEqual(firstColumn.map((k) => k * 2));
  });
});

describe("fitToExcel", () => {
  it("cuts text over Excel's cell limit and says so in the row's error", () => {
    const long = "x".repeat(MAX_CELL_TEXT + 10);
    const fitted = fitToExcel({ cells: ["a", long, 3], error: null }, ["id", "summary", "n"]);
    expect(fitted.cells).toEqual(["a", "x".repeat(MAX_CELL_TEXT), 3]);
    expect(fitted.error).toBe(
      `summary cut from ${MAX_CELL_TEXT + 10} to ${MAX_CELL_TEXT} characters (Excel's cell limit)`,
    );
    expect(fitted.cut).toBe(true);
  });

  it("keeps an existing error first and leaves a fitting row untouched", () => {
    const long = "y".repeat(MAX_CELL_TEXT + 1);
    expect(fitToExcel({ cells: [long], error: "HTTP 503" }, ["r"]).error).toMatch(
      /^HTTP 503; r cut from/,
    );
    expect(fitToExcel({ cells: ["ok", 1], error: null }, ["a", "b"])).toEqual({
      cells: ["ok", 1],
      error: null,
      cut: false,
    });
  });
});
