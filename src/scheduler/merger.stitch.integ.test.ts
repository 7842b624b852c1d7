/**
 * The merge that stitches: workers' rendered segments concatenated between the merger's own
 * header and footer, read back by independent readers (yauzl with CRC-32 checks, exceljs,
 * openpyxl, LibreOffice headless) against the local S3 server.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalAws, startLocalAws } from "../../test/support/local-aws.ts";
import { testManifest, writeManifest } from "../../test/support/manifests.ts";
import { scriptedRunner, writeSlice } from "../../test/support/worker.ts";
import {
  findLibreOffice,
  findOpenpyxl,
  type PlainCell,
  readWithExceljs,
  readWithLibreOffice,
  readWithOpenpyxl,
  readZipChecked,
} from "../../test/support/xlsx-readers.ts";
import { keys } from "../shared/keys.ts";
import { silentLogger } from "../shared/logger.ts";
import { type Cell, encodeCell, type ResultRow } from "../shared/schemas/cells.ts";
import type { Manifest, ShardRange } from "../shared/schemas/operation.ts";
import { type ChunkRef, type SegmentRef, shardDoneSchema } from "../shared/schemas/shard.ts";
import { putSegment } from "../worker/output-segments.ts";
import { ShardProcessor } from "../worker/shard-processor.ts";
import { mergeOperation } from "./merger.ts";

const HEADERS = ["name", "amount", "when"];
const day = new Date(Date.UTC(2024, 1, 3));
const when = new Date(Date.UTC(2024, 1, 3, 4, 5, 6));

/** Input rows 0..6 (three shards: 0-2, 2-5, 5-7) with every kind of cell and awkward text. */
const INPUT: Cell[][] = [
  ["ada", 1.5, day],
  ["a < b & c > d", -42, when],
  ["  leading and trailing  ", 12345678901234, null],
  ["line\nbreak\ttab", 0, day],
  ["ünïcødé 😀", true, null],
  ["bell\u0007 gone", false, when],
  [null, null, null],
];
const NOTES = new Map([
  [3, "row 5 has a value beyond the header's last column (D): D5, not processed"],
]);

/** One result per row; row 2 failed; columns [score, ok]. */
const RESULTS: ResultRow[] = [
  { i: 0, r: { score: 10, ok: true } },
  { i: 1, r: { score: 11.25, ok: false } },
  { i: 2, e: "HTTP 500 from the source" },
  { i: 3, r: { score: 13, ok: true } },
  { i: 4, r: { score: encodeCell(when), ok: true } },
  { i: 5, r: { score: "<tag>", ok: null } },
  { i: 6, r: { score: 16 } },
];

/** What every reader should see (dates as ISO without milliseconds). */
const D = (d: Date) => ({ date: d.toISOString().replace(/\.000Z$/, "") });
const EXPECTED: PlainCell[][] = [
  ["name", "amount", "when", "score", "ok", "error"],
  ["ada", 1.5, D(day), 10, true],
  ["a < b & c > d", -42, D(when), 11.25, false],
  ["  leading and trailing  ", 12345678901234, null, null, null, "HTTP 500 from the source"],
  ["line\nbreak\ttab", 0, D(day), 13, true, NOTES.get(3)!],
  ["ünïcødé 😀", true, null, D(when), true],
  ["bell gone", false, D(when), "<tag>"],
  [null, null, null, 16],
];

const SHARDS: ShardRange[] = [
  { id: "s000000", start: 0, end: 2 },
  { id: "s000001", start: 2, end: 5 },
  { id: "s000002", start: 5, end: 7 },
];

let aws: LocalAws;

beforeAll(async () => {
  aws = await startLocalAws("merger-stitch-test");
});
afterAll(async () => {
  await aws?.close();
});

function manifestOf(op: string): Manifest {
  return testManifest(op, {
    status: "merging",
    headers: HEADERS,
    rows: INPUT.length,
    shards: SHARDS,
  });
}

const inputs = new Map(
  INPUT.map((cells, i) => [i, NOTES.has(i) ? { cells, note: NOTES.get(i)! } : { cells }]),
);

/** The input slice of `shard` (only the merger's own rendering reads it). */
async function putSlice(op: string, shard: ShardRange) {
  const lines = INPUT.slice(shard.start, shard.end).map((cells, k) => {
    const i = shard.start + k;
    return `${JSON.stringify({ i, c: cells.map(encodeCell), ...(NOTES.has(i) ? { n: NOTES.get(i) } : {}) })}\n`;
  });
  await aws.store.putText(keys.shardInput(op, shard.id), lines.join(""));
}

/**
 * Commits `shard` as a worker does: each chunk's NDJSON and (unless `render: false`) its
 * segment rendered by the worker's own code with `columns`.
 */
async function commit(
  op: string,
  shard: ShardRange,
  cuts: number[],
  options: {
    attemptId?: string;
    columns?: string[];
    results?: ResultRow[];
    render?: boolean;
    failed?: string;
  } = {},
) {
  const { attemptId = "a1", columns = ["score", "ok"], results = RESULTS } = options;
  const bounds = [shard.start, ...cuts, shard.end];
  const chunks: ChunkRef[] = [];
  const segments: SegmentRef[] = [];
  for (let n = 0; n + 1 < bounds.length; n++) {
    const start = bounds[n]!;
    const end = bounds[n + 1]!;
    const rows = results.filter((r) => r.i >= start && r.i < end);
    const key = keys.chunk(op, shard.id, start, end);
    await aws.store.putText(key, rows.map((r) => `${JSON.stringify(r)}\n`).join(""));
    const put =
      options.render === false
        ? undefined
        : await putSegment(
            aws.store,
            { operationId: op, shardId: shard.id },
            { start, end, rows },
            columns,
            { headers: HEADERS, inputs, attemptId },
            new AbortController().signal,
          );
    chunks.push({ key, start, end });
    if (put) segments.push(put.ref);
  }
  await aws.store.putJson(keys.done(op, shard.id), shardDoneSchema, {
    v: 1,
    operationId: op,
    shardId: shard.id,
    attemptId,
    instanceId: "i-test",
    rows: shard.end - shard.start,
    errorRows: 0,
    columns,
    chunks,
    ...(segments.length > 0 ? { segments } : {}),
    ...(options.failed ? { failed: options.failed } : {}),
    committedAt: new Date().toISOString(),
  });
}

async function resultBytes(op: string): Promise<Buffer> {
  const bytes = await aws.store.getBytes(keys.result(op));
  if (!bytes) throw new Error(`no result for ${op}`);
  return bytes;
}

describe("the merge stitches workers' segments", () => {
  it("writes the workbook from segments alone (no slice or chunk read), and every reader agrees", async () => {
    const op = "op-stitch-all";
    await commit(op, SHARDS[0]!, []);
    await commit(op, SHARDS[1]!, [3]); // two chunks, two segments
    await commit(op, SHARDS[2]!, []);
    // Neither slices nor chunks exist: only the segments can give the rows.
    for (const shard of SHARDS) await aws.store.deletePrefix(keys.chunksPrefix(op, shard.id));

    const result = await mergeOperation(
      { store: aws.store, logger: silentLogger() },
      { manifest: manifestOf(op) },
    );
    expect(result).toEqual({
      key: keys.result(op),
      rows: 7,
      errorRows: 2,
      columns: ["score", "ok"],
    });
    const zip = await resultBytes(op);
    const entries = await readZipChecked(zip);
    expect([...entries.keys()].sort()).toEqual(
      [
        "[Content_Types].xml",
        "_rels/.rels",
        "xl/_rels/workbook.xml.rels",
        "xl/styles.xml",
        "xl/workbook.xml",
        "xl/worksheets/sheet1.xml",
      ].sort(),
    );
    const sheetXml = entries.get("xl/worksheets/sheet1.xml")!.bytes.toString("utf8");
    // Row numbers follow the input rows, once each, in order.
    expect([...sheetXml.matchAll(/<row r="(\d+)"/g)].map((m) => Number(m[1]))).toEqual([
      1, 2, 3, 4, 5, 6, 7, 8,
    ]);
    expect(await readWithExceljs(zip, "results")).toEqual(EXPECTED);
  });

  it("gives the same rows as the merger's own rendering of the same commits", async () => {
    const stitched = "op-stitch-same-a";
    const rendered = "op-stitch-same-b";
    for (const shard of SHARDS) {
      await commit(stitched, shard, []);
      await commit(rendered, shard, [], { render: false });
      await putSlice(rendered, shard);
    }
    for (const op of [stitched, rendered]) {
      await mergeOperation(
        { store: aws.store, logger: silentLogger() },
        { manifest: manifestOf(op) },
      );
    }
    const a = await readZipChecked(await resultBytes(stitched));
    const b = await readZipChecked(await resultBytes(rendered));
    for (const [name, entry] of a) expect(entry.bytes.equals(b.get(name)!.bytes), name).toBe(true);
  });

  it("renders what it cannot stitch (other columns, a shard given up on, a lost segment) and numbers every row right", async () => {
    const op = "op-stitch-mixed";
    // Shard 0: rendered with fewer columns than the operation's union: its error column would
    // be in the wrong place, so the merger renders it.
    await commit(op, SHARDS[0]!, [], {
      columns: ["score"],
      results: RESULTS.map(({ i, r, e }) => ({
        i,
        ...(e ? { e } : {}),
        ...(r ? { r: { score: r.score! } } : {}),
      })),
    });
    // Shard 1: given up on.
    await commit(op, SHARDS[1]!, [], { failed: "poison shard" });
    // Shard 2: its segment object is gone.
    await commit(op, SHARDS[2]!, []);
    await aws.store.deletePrefix(keys.segmentsPrefix(op, SHARDS[2]!.id));
    for (const shard of SHARDS) await putSlice(op, shard);

    const result = await mergeOperation(
      { store: aws.store, logger: silentLogger() },
      { manifest: manifestOf(op) },
    );
    expect(result.rows).toBe(7);
    const zip = await resultBytes(op);
    await readZipChecked(zip);
    const rows = await readWithExceljs(zip, "results");
    expect(rows[0]).toEqual(EXPECTED[0]);
    expect(rows[1]).toEqual(["ada", 1.5, D(day), 10]);
    expect(rows[3]).toEqual([
      "  leading and trailing  ",
      12345678901234,
      null,
      null,
      null,
      "poison shard",
    ]);
    expect(rows[4]?.at(-1)).toBe(`${NOTES.get(3)}; poison shard`);
    expect(rows.slice(6)).toEqual(EXPECTED.slice(6));
    expect(rows).toHaveLength(8);
  });

  it("uses the winning commit's segments, never a losing attempt's bytes for the same rows", async () => {
    const op = "op-stitch-race";
    const loser = RESULTS.map((r) => ({ i: r.i, r: { score: -1, ok: false } }));
    for (const shard of SHARDS) await commit(op, shard, [], { attemptId: "loser", results: loser });
    // The winner commits last here, overwriting done.json as only a first commit would; its
    // segments have their own keys, so the loser's bytes stay and are not used.
    for (const shard of SHARDS) await commit(op, shard, [], { attemptId: "winner" });
    await mergeOperation(
      { store: aws.store, logger: silentLogger() },
      { manifest: manifestOf(op) },
    );
    expect(await readWithExceljs(await resultBytes(op), "results")).toEqual(EXPECTED);
  });

  it("renders a retried shard from each row's latest run (not its first run's segments); the others are stitched", async () => {
    const op = "op-stitch-retried";
    for (const shard of SHARDS) await commit(op, shard, []);
    // Row 2 failed in the first run; retry 1 ran it again (its own shard, segments and all).
    const retryShard = { id: "s000001-r1", base: SHARDS[1]!.id, start: 2, end: 5, rows: 1 };
    await commit(op, retryShard, [], { results: [{ i: 2, r: { score: 12, ok: true } }] });
    await putSlice(op, SHARDS[1]!);
    // Shards 0 and 2 were not retried: only their segments can give their rows.
    for (const shard of [SHARDS[0]!, SHARDS[2]!]) {
      await aws.store.deletePrefix(keys.chunksPrefix(op, shard.id));
    }
    const now = new Date().toISOString();
    const manifest = testManifest(op, {
      status: "merging",
      headers: HEADERS,
      rows: INPUT.length,
      shards: SHARDS,
      retries: [
        { number: 1, requestedAt: now, options: {}, shards: [retryShard], rows: 1, plannedAt: now },
      ],
    });

    const result = await mergeOperation({ store: aws.store, logger: silentLogger() }, { manifest });
    expect(result).toMatchObject({ rows: 7, errorRows: 1, columns: ["score", "ok"] });
    const zip = await resultBytes(op);
    await readZipChecked(zip);
    const rows = await readWithExceljs(zip, "results");
    expect(rows[3]).toEqual(["  leading and trailing  ", 12345678901234, null, 12, true]);
    expect(rows).toEqual([...EXPECTED.slice(0, 3), rows[3], ...EXPECTED.slice(4)]);
  });

  it("writes Zip64 headers when asked, and readers still read it", async () => {
    const op = "op-stitch-zip64";
    for (const shard of SHARDS) await commit(op, shard, []);
    await mergeOperation(
      { store: aws.store, logger: silentLogger() },
      { manifest: manifestOf(op), zip64: true },
    );
    const zip = await resultBytes(op);
    // The Zip64 end record and its locator are there.
    expect(zip.includes(Buffer.from([0x50, 0x4b, 0x06, 0x06]))).toBe(true);
    expect(zip.includes(Buffer.from([0x50, 0x4b, 0x06, 0x07]))).toBe(true);
    await readZipChecked(zip);
    expect(await readWithExceljs(zip, "results")).toEqual(EXPECTED);
  });
});

describe("a worker's commit, stitched", () => {
  it("merges what ShardProcessor committed from its segments alone", async () => {
    const op = "op-stitch-worker";
    const manifest = await writeManifest(aws.store, op, HEADERS, {
      name: "transform",
      options: { module: "unused" },
    });
    const results = (i: number): ResultRow => RESULTS[i]!;
    const runner = () => ({ ...scriptedRunner(() => 1, results), columns: ["score", "ok"] });
    const processor = new ShardProcessor(
      { store: aws.store, logger: silentLogger(), createRunner: async () => runner() },
      { instanceId: "i-stitch", market: "spot", pluginDir: "/nonexistent" },
    );
    try {
      for (const shard of SHARDS) {
        const message = await writeSlice(
          aws.store,
          op,
          shard.id,
          shard.start,
          INPUT.slice(shard.start, shard.end),
        );
        const outcome = await processor.process(JSON.stringify(message), {
          signal: new AbortController().signal,
        });
        expect(outcome.kind).toBe("delete");
      }
    } finally {
      await processor.close();
    }
    // Only the segments remain for the merge to use.
    for (const shard of SHARDS) {
      await aws.store.deletePrefix(keys.chunksPrefix(op, shard.id));
      await aws.store.deletePrefix(keys.shardInput(op, shard.id));
    }
    await mergeOperation(
      { store: aws.store, logger: silentLogger() },
      { manifest: { ...manifest, status: "merging", rows: INPUT.length, shards: SHARDS } },
    );
    const zip = await resultBytes(op);
    await readZipChecked(zip);
    // writeSlice carries no notes: row 4's error cell stays empty here.
    const expected = EXPECTED.map((row, n) => (n === 4 ? row.slice(0, 5) : row));
    expect(await readWithExceljs(zip, "results")).toEqual(expected);
  });
});

const python = await findOpenpyxl();

// Debian's python3-openpyxl (.ci/run installs it).
describe.skipIf(!python)("openpyxl", () => {
  it("reads the stitched workbook, plain and Zip64: every value, the frozen header, bold names", async () => {
    for (const zip64 of [false, true]) {
      const op = `op-stitch-openpyxl-${zip64}`;
      for (const shard of SHARDS) await commit(op, shard, []);
      await mergeOperation(
        { store: aws.store, logger: silentLogger() },
        { manifest: manifestOf(op), zip64 },
      );
      const read = await readWithOpenpyxl(python!, await resultBytes(op), "results");
      expect(read.rows).toEqual(EXPECTED);
      expect(read.frozen).toBe("A2");
      expect(read.bold).toBe(true);
    }
  }, 60_000);
});

// Debian's libreoffice-calc-nogui (.ci/run installs it).
describe.skipIf(!findLibreOffice())("LibreOffice headless", () => {
  it("opens the stitched workbook and shows every row", async () => {
    const soffice = findLibreOffice();
    if (!soffice) throw new Error("LibreOffice (libreoffice-calc-nogui) is not installed");
    const op = "op-stitch-soffice";
    for (const shard of SHARDS) await commit(op, shard, []);
    await mergeOperation(
      { store: aws.store, logger: silentLogger() },
      { manifest: manifestOf(op) },
    );
    const rows = await readWithLibreOffice(soffice, await resultBytes(op));
    // Cells as LibreOffice shows them (dates in their number format, booleans as words).
    expect(rows).toEqual([
      ["name", "amount", "when", "score", "ok", "error"],
      ["ada", "1.5", "2024-02-03", "10", "TRUE", ""],
      ["a < b & c > d", "-42", "2024-02-03 04:05:06", "11.25", "FALSE", ""],
      ["  leading and trailing  ", "12345678901234", "", "", "", "HTTP 500 from the source"],
      ["line\nbreak\ttab", "0", "2024-02-03", "13", "TRUE", NOTES.get(3)],
      ["ünïcødé 😀", "TRUE", "", "2024-02-03 04:05:06", "TRUE", ""],
      ["bell gone", "FALSE", "2024-02-03 04:05:06", "<tag>", "", ""],
      ["", "", "", "16", "", ""],
    ]);
  }, 240_000);
});
