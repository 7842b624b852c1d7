/**
 * The split alone: the customers workbook split by `splitOperation` in a process of its own
 * against the local S3/SQS server (in this process), its CPU and peak RSS. Figures only.
 * Usage: node --import tsx bench/split/measure.ts [ROWS,…] [SHARD_SIZE]
 *   SPLIT_NODE_FLAGS (space-separated) go to the splitting process, e.g.
 *   `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile the split alone.
 */
import { createReadStream } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Readable } from "node:stream";
import { CUSTOMER_HEADERS, writeCustomersWorkbook } from "../../src/demo/customers.ts";
import { startLocalAws } from "../../test/support/local-aws.ts";
import { testManifest } from "../../test/support/manifests.ts";
import { runChild } from "../child.ts";

export interface SplitFigures {
  rows: number;
  shards: number;
  cpuMs: number;
  wallMs: number;
  peakRssMb: number;
}

export async function measureSplit(rows: number, shardSize: number): Promise<SplitFigures> {
  const dir = await mkdtemp(path.join(tmpdir(), "shardfleet-split-"));
  const aws = await startLocalAws(`split${rows}`, {});
  try {
    const input = path.join(dir, "input.xlsx");
    await writeCustomersWorkbook(input, rows);
    const manifest = testManifest(`split-${rows}`, { shardSize });
    manifest.headers = [...CUSTOMER_HEADERS];
    await aws.store.upload(manifest.input.key, createReadStream(input) as Readable);
    const file = path.join(dir, "manifest.json");
    await writeFile(file, JSON.stringify(manifest));
    return await runChild<SplitFigures>(
      aws,
      path.join(import.meta.dirname, "run-split.ts"),
      { BENCH_QUEUE: aws.resources.queues.work, BENCH_MANIFEST: file },
      process.env.SPLIT_NODE_FLAGS?.split(" ").filter(Boolean),
    );
  } finally {
    await aws.close();
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === import.meta.filename) {
  const sizes = (process.argv[2] ?? "100000").split(",").map(Number);
  const shardSize = Number(process.argv[3] ?? 10_000);
  for (const rows of sizes) {
    const f = await measureSplit(rows, shardSize);
    process.stdout.write(
      `${JSON.stringify({ ...f, cpuSecondsPerMillion: (f.cpuMs / 1000) * (1e6 / f.rows) })}\n`,
    );
  }
}
