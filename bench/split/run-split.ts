/**
 * One split, alone in its own process (so its CPU is the splitter's, not the S3/SQS server's):
 * reads BENCH_* from the environment (bench/child.ts), prints JSON {rows, shards, cpuMs, wallMs, peakRssMb}.
 */
import { readFile } from "node:fs/promises";
import { splitOperation } from "../../src/scheduler/splitter.ts";
import { silentLogger } from "../../src/shared/logger.ts";
import { ShardQueue } from "../../src/shared/shard-queue.ts";
import { childAws, childEnv } from "../child.ts";

const { clients, store } = childAws();
const queue = new ShardQueue({ sqs: clients.sqs });
const manifest = JSON.parse(await readFile(childEnv("BENCH_MANIFEST"), "utf8"));
const cpu = process.cpuUsage();
const started = performance.now();
const result = await splitOperation(
  { store, queue, logger: silentLogger() },
  { manifest, workQueueUrl: childEnv("BENCH_QUEUE") },
);
const wallMs = performance.now() - started;
const used = process.cpuUsage(cpu);
clients.destroy();
process.stdout.write(
  `${JSON.stringify({
    rows: result.rows,
    shards: result.shards.length,
    cpuMs: (used.user + used.system) / 1000,
    wallMs,
    peakRssMb: process.resourceUsage().maxRSS / 1024,
  })}\n`,
);
