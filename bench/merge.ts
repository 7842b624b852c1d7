/**
 * bench/merge: what the scheduler spends merging, per million rows, and its peak memory. An
 * operation's commits are laid out in the local S3 server the way workers leave them (input
 * slices, result chunks, and each chunk's rendered segment), then one merge runs in a process of
 * its own (bench/merge-child.ts), which reports its CPU time and peak RSS. "before" runs the
 * merger of another revision (default `main`: exceljs writing every cell) on the same objects;
 * "after" runs this tree's (stitching the segments). Figures, not assertions.
 *
 * Usage: npm run bench:merge -- [--rows 100000,1000000] [--shard-size 10000] [--before main|none]
 *   [--verify] (read the output back: every entry's CRC-32 and the row count)
 * `benchMerge` is the function `npm run bench` calls for its merge figure.
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs, promisify } from "node:util";
import { crc32 } from "node:zlib";
import yauzl from "yauzl";
import { keys, shardIdFor } from "../src/shared/keys.ts";
import type { ObjectStore } from "../src/shared/object-store.ts";
import { type Cell, encodeCell, type ResultRow } from "../src/shared/schemas/cells.ts";
import { manifestSchema } from "../src/shared/schemas/operation.ts";
import { type ChunkRef, type SegmentRef, shardDoneSchema } from "../src/shared/schemas/shard.ts";
import { putSegment } from "../src/worker/output-segments.ts";
import { startLocalAws } from "../test/support/local-aws.ts";
import { testManifest } from "../test/support/manifests.ts";

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, "..");
const THIS_MERGER = path.join(ROOT, "src/scheduler/merger.ts");

export interface MergeFigures {
  rows: number;
  /** Wall time of the merge alone. */
  wallS: number;
  /** CPU time (user + system, every thread) of the merging process during the merge. */
  cpuS: number;
  cpuSPerMillionRows: number;
  /** Peak RSS of the merging process before the merge started (modules loaded) and at its end. */
  rssBeforeMb: number;
  peakRssMb: number;
  /** Size of the output workbook. */
  outputMb: number;
}

const HEADERS = ["customer", "email", "amount", "since", "active"];
/** Rows per result chunk (a shard commits several, as checkpoints leave them). */
const CHUNK_ROWS = 2_000;

function inputRow(i: number): Cell[] {
  return [
    `Customer ${i}`,
    `customer${i}@example.com`,
    Math.round(i * 7.31) / 100,
    new Date(Date.UTC(2020, 0, 1) + (i % 1500) * 86_400_000),
    i % 3 !== 0,
  ];
}

function resultRow(i: number): ResultRow {
  return i % 97 === 0
    ? { i, e: "HTTP 503 from the source" }
    : { i, r: { taxDue: (i % 1000) * 1.5, status: "ok" } };
}

/** Lays out `rows` rows in `shardSize` shards as workers commit them; returns the op id. */
export async function layOutCommits(
  store: ObjectStore,
  rows: number,
  shardSize: number,
): Promise<string> {
  const op = `bench-merge-${rows}`;
  const columns = ["taxDue", "status"];
  const shards = [];
  for (let k = 0; k * shardSize < rows; k++) {
    const shard = {
      id: shardIdFor(k),
      start: k * shardSize,
      end: Math.min(rows, (k + 1) * shardSize),
    };
    shards.push(shard);
    const inputs = new Map<number, { cells: Cell[] }>();
    let slice = "";
    for (let i = shard.start; i < shard.end; i++) {
      const cells = inputRow(i);
      inputs.set(i, { cells });
      slice += `${JSON.stringify({ i, c: cells.map(encodeCell) })}\n`;
    }
    await store.putText(keys.shardInput(op, shard.id), slice, "application/x-ndjson");
    const chunks: ChunkRef[] = [];
    const segments: SegmentRef[] = [];
    for (let start = shard.start; start < shard.end; start += CHUNK_ROWS) {
      const end = Math.min(shard.end, start + CHUNK_ROWS);
      const results: ResultRow[] = [];
      for (let i = start; i < end; i++) results.push(resultRow(i));
      const key = keys.chunk(op, shard.id, start, end);
      await store.putText(key, results.map((r) => `${JSON.stringify(r)}\n`).join(""));
      const put = await putSegment(
        store,
        { operationId: op, shardId: shard.id },
        { start, end, rows: results },
        columns,
        { headers: HEADERS, inputs, attemptId: "bench" },
        new AbortController().signal,
      );
      chunks.push({ key, start, end });
      if (put) segments.push(put.ref);
    }
    await store.putJson(keys.done(op, shard.id), shardDoneSchema, {
      v: 1,
      operationId: op,
      shardId: shard.id,
      attemptId: "bench",
      instanceId: "bench",
      rows: shard.end - shard.start,
      errorRows: 0,
      columns,
      chunks,
      segments,
      committedAt: new Date().toISOString(),
    });
  }
  await store.putJson(
    keys.manifest(op),
    manifestSchema,
    testManifest(op, { status: "merging", headers: HEADERS, rows, shards }),
  );
  return op;
}

/**
 * A checkout of another revision's merger beside this tree's modules (it imports only
 * src/shared and src/scheduler/workbook, which it finds here): for "before" figures.
 */
export async function mergerOfRevision(rev: string, dir: string): Promise<string> {
  const { stdout } = await run("git", ["show", `${rev}:src/scheduler/merger.ts`], {
    cwd: ROOT,
    maxBuffer: 16 * 1024 * 1024,
  });
  await mkdir(path.join(dir, "src/scheduler"), { recursive: true });
  await symlink(path.join(ROOT, "src/shared"), path.join(dir, "src/shared"));
  await symlink(
    path.join(ROOT, "src/scheduler/workbook"),
    path.join(dir, "src/scheduler/workbook"),
  );
  await symlink(path.join(ROOT, "node_modules"), path.join(dir, "node_modules"));
  const file = path.join(dir, "src/scheduler/merger.ts");
  await writeFile(file, stdout);
  return file;
}

/**
 * Reads the output workbook back with yauzl, streaming: every entry's CRC-32 (computed as it
 * inflates) and size against the central directory, and the sheet's `<row` count. Throws on a
 * mismatch.
 */
export async function verifyOutput(store: ObjectStore, op: string): Promise<{ sheetRows: number }> {
  const zip = await store.getBytes(keys.result(op));
  if (!zip) throw new Error(`no output for ${op}`);
  const file = await promisify<Buffer, yauzl.Options, yauzl.ZipFile>(yauzl.fromBuffer)(zip, {
    lazyEntries: true,
  });
  let sheetRows = 0;
  await new Promise<void>((resolve, reject) => {
    file.on("error", reject);
    file.on("end", () => resolve());
    file.on("entry", (entry: yauzl.Entry) => {
      file.openReadStream(entry, (err, stream) => {
        if (err) return reject(err);
        let crc = 0;
        let size = 0;
        let tail = "";
        const sheet = entry.fileName === "xl/worksheets/sheet1.xml";
        stream.on("data", (b: Buffer) => {
          crc = crc32(b, crc);
          size += b.length;
          if (sheet) {
            // The tail (4 characters, shorter than "<row ") finds a match cut between chunks
            // and can never hold a whole one, so none is counted twice.
            const text = tail + b.toString("latin1");
            sheetRows += text.split("<row ").length - 1;
            tail = text.slice(-4);
          }
        });
        stream.on("error", reject);
        stream.on("end", () => {
          if (crc !== entry.crc32 || size !== entry.uncompressedSize) {
            return reject(new Error(`${entry.fileName}: CRC or size differs from its record`));
          }
          file.readEntry();
        });
      });
    });
    file.readEntry();
  });
  return { sheetRows };
}

/** One merge of `op` by the merger module `merger`, in a process of its own. */
export async function measureMerge(
  env: { endpoint: string; bucket: string },
  op: string,
  merger: string = THIS_MERGER,
): Promise<MergeFigures> {
  const { stdout } = await run(
    process.execPath,
    [
      "--import",
      "tsx",
      path.join(ROOT, "bench/merge-child.ts"),
      merger,
      env.endpoint,
      env.bucket,
      op,
    ],
    {
      cwd: ROOT,
      maxBuffer: 1024 * 1024,
      env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true" },
    },
  );
  const line = stdout.trim().split("\n").at(-1) ?? "";
  const figures = JSON.parse(line) as Omit<MergeFigures, "cpuSPerMillionRows">;
  return { ...figures, cpuSPerMillionRows: (figures.cpuS * 1e6) / figures.rows };
}

/**
 * The merge figure of `npm run bench`: this tree's merger on `rows` rows (commits laid out in a
 * local S3 server of its own), and optionally another revision's on the same objects.
 */
export async function benchMerge(options: {
  rows: number;
  shardSize?: number;
  /** A git revision whose merger to measure too ("before"). */
  before?: string;
  /** Read this tree's output back (yauzl, CRC-32 of every entry, rows counted). */
  verify?: boolean;
}): Promise<{ after: MergeFigures; before?: MergeFigures }> {
  const aws = await startLocalAws("bench-merge");
  const dir = await mkdtemp(path.join(tmpdir(), "shardfleet-bench-merge-"));
  try {
    const op = await layOutCommits(aws.store, options.rows, options.shardSize ?? 10_000);
    const env = { endpoint: aws.server.endpoint, bucket: aws.resources.bucket };
    const after = await measureMerge(env, op);
    if (options.verify) {
      const { sheetRows } = await verifyOutput(aws.store, op);
      if (sheetRows !== options.rows + 1) {
        throw new Error(`the output holds ${sheetRows} rows, not ${options.rows} and the header`);
      }
      console.error(`verified: ${options.rows} rows and the header, every CRC-32 right (yauzl)`);
    }
    if (!options.before) return { after };
    const before = await measureMerge(env, op, await mergerOfRevision(options.before, dir));
    return { after, before };
  } finally {
    await aws.close();
    await rm(dir, { recursive: true, force: true });
  }
}

const isMain =
  process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename);
if (isMain) {
  const { values } = parseArgs({
    options: {
      rows: { type: "string", default: "100000,1000000" },
      "shard-size": { type: "string", default: "10000" },
      before: { type: "string", default: "main" },
      verify: { type: "boolean", default: false },
    },
  });
  const sizes = values.rows.split(",").map(Number);
  const before = values.before === "none" ? undefined : values.before;
  const fmt = (n: number | undefined, d = 2) => (n === undefined ? "n/a" : n.toFixed(d));
  console.log(
    "| rows | merger | wall s | CPU s | CPU s / 1M rows | RSS before merge MB | peak RSS MB | output MB |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const rows of sizes) {
    const figures = await benchMerge({
      rows,
      verify: values.verify,
      shardSize: Number(values["shard-size"]),
      ...(before ? { before } : {}),
    });
    for (const [name, f] of [
      [`before (${before})`, figures.before],
      ["after (stitch)", figures.after],
    ] as const) {
      if (!f) continue;
      console.log(
        `| ${rows.toLocaleString("en")} | ${name} | ${fmt(f.wallS)} | ${fmt(f.cpuS)} | ${fmt(f.cpuSPerMillionRows)} | ${fmt(f.rssBeforeMb, 0)} | ${fmt(f.peakRssMb, 0)} | ${fmt(f.outputMb, 1)} |`,
      );
    }
  }
}
