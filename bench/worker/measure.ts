/**
 * bench/worker (`npm run bench:worker`): one worker's CPU per row, alone. The customers workbook
 * is split by the real splitter against the local S3/SQS server (in this process); then a
 * process of its own runs a ShardProcessor with the no-op `transform` over every shard, one
 * after the other, and reports its CPU (every thread) per million rows: the first shard (plugin
 * load, pool start, SDK warm-up) apart from the rest. Figures only.
 *
 * Usage: npm run bench:worker -- [--rows N] [--shard-size N] [--batch-size N] [--prof FILE]
 *   [--in-flight N]
 *   --prof FILE writes a V8 CPU profile of the worker's main thread, from its second shard on.
 *   --in-flight N runs the shards N at a time, as a worker with N shards in flight (its peak
 *   RSS is that of shards finishing together).
 */
import { createReadStream } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import path from "node:path";
import type { Readable } from "node:stream";
import { parseArgs } from "node:util";
import { CUSTOMER_HEADERS, writeCustomersWorkbook } from "../../src/demo/customers.ts";
import { splitOperation } from "../../src/scheduler/splitter.ts";
import { keys } from "../../src/shared/keys.ts";
import { silentLogger } from "../../src/shared/logger.ts";
import { manifestSchema } from "../../src/shared/schemas/operation.ts";
import type { ShardMessage } from "../../src/shared/schemas/shard.ts";
import { startLocalAws } from "../../test/support/local-aws.ts";
import { testManifest } from "../../test/support/manifests.ts";
import { runChild } from "../child.ts";

/** What bench/worker/run-shards.ts prints. */
export interface WorkerFigures {
  rows: number;
  shards: number;
  /** CPU ms of the first shard (start-up included) and of the others. */
  firstCpuMs: number;
  restCpuMs: number;
  restRows: number;
  wallMs: number;
  peakRssMb: number;
  /** CPU ms of the worker process's threads by name, over its whole life. */
  threads: Record<string, number>;
}

export async function measureWorker(
  rows: number,
  shardSize: number,
  prof?: string,
  batchSize?: number,
  inFlight?: number,
): Promise<WorkerFigures> {
  const dir = await mkdtemp(path.join(tmpdir(), "shardfleet-worker-"));
  const aws = await startLocalAws(`worker${rows}`, {});
  try {
    const input = path.join(dir, "input.xlsx");
    await writeCustomersWorkbook(input, rows);
    const op = `worker-${rows}`;
    const manifest = testManifest(op, {
      shardSize,
      spec: {
        version: 1,
        task: {
          name: "transform",
          options: { module: "noop", ...(batchSize ? { batchSize } : {}) },
        },
        shardSize,
        toleratedFailurePercent: 0,
      },
    });
    manifest.headers = [...CUSTOMER_HEADERS];
    await aws.store.upload(manifest.input.key, createReadStream(input) as Readable);
    const messages: ShardMessage[] = [];
    const split = await splitOperation(
      {
        store: aws.store,
        queue: { sendShards: async (_url, shards) => void messages.push(...shards) },
        logger: silentLogger(),
      },
      { manifest, workQueueUrl: aws.resources.queues.work },
    );
    await aws.store.putJson(keys.manifest(op), manifestSchema, {
      ...manifest,
      status: "running",
      rows: split.rows,
      shards: split.shards,
      startedAt: new Date().toISOString(),
    });
    const file = path.join(dir, "messages.json");
    await writeFile(file, JSON.stringify(messages));
    return await runChild<WorkerFigures>(aws, path.join(import.meta.dirname, "run-shards.ts"), {
      BENCH_MESSAGES: file,
      BENCH_PLUGINS: path.join(import.meta.dirname, "../../plugins"),
      ...(prof ? { BENCH_PROFILE: path.resolve(prof) } : {}),
      ...(inFlight ? { BENCH_IN_FLIGHT: String(inFlight) } : {}),
    });
  } finally {
    await aws.close();
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === import.meta.filename) {
  const { values } = parseArgs({
    options: {
      rows: { type: "string", default: "100000" },
      "shard-size": { type: "string", default: "10000" },
      prof: { type: "string" },
      "batch-size": { type: "string" },
      "in-flight": { type: "string" },
    },
  });
  const before = loadavg()[0]?.toFixed(1);
  const batch = values["batch-size"] ? Number(values["batch-size"]) : undefined;
  const inFlight = values["in-flight"] ? Number(values["in-flight"]) : undefined;
  const f = await measureWorker(
    Number(values.rows),
    Number(values["shard-size"]),
    values.prof,
    batch,
    inFlight,
  );
  const perMillion = (ms: number, n: number) => ((ms / 1000) * 1e6) / n;
  process.stdout.write(
    [
      `bench/worker — no-op transform${batch ? ` (batchSize ${batch})` : ""}, ${f.rows.toLocaleString("en-US")} rows in ${f.shards} shards${inFlight ? `, ${inFlight} at a time` : ""}, one worker process; load average ${before} before, ${loadavg()[0]?.toFixed(1)} after`,
      `  first shard (start-up included): ${(f.firstCpuMs / 1000).toFixed(2)} CPU-s`,
      `  the other ${f.restRows.toLocaleString("en-US")} rows: ${(f.restCpuMs / 1000).toFixed(2)} CPU-s = ${perMillion(f.restCpuMs, f.restRows).toFixed(2)} CPU-s per 1M rows (${((f.restCpuMs * 1000) / f.restRows).toFixed(1)} µs a row)`,
      `  threads (whole life, CPU-s): ${Object.entries(f.threads)
        .sort((a, b) => b[1] - a[1])
        .map(([name, ms]) => `${name} ${(ms / 1000).toFixed(2)}`)
        .join(", ")}`,
      `  all: ${perMillion(f.firstCpuMs + f.restCpuMs, f.rows).toFixed(2)} CPU-s per 1M rows; wall ${(f.wallMs / 1000).toFixed(2)} s; peak RSS ${f.peakRssMb.toFixed(0)} MB`,
      "",
    ].join("\n"),
  );
}
