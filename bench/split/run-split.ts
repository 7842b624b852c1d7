/**
 * One split, alone in its own process (so its CPU is the splitter's, not the S3/SQS server's):
 * reads SPLIT_* from the environment, prints JSON {rows, shards, cpuMs, wallMs, peakRssMb}.
 */
import { readFile } from "node:fs/promises";
import { splitOperation } from "../../src/scheduler/splitter.ts";
import { createAwsClients } from "../../src/shared/aws.ts";
import { silentLogger } from "../../src/shared/logger.ts";
import { ObjectStore } from "../../src/shared/object-store.ts";
import { ShardQueue } from "../../src/shared/shard-queue.ts";

const env = (name: string) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const clients = createAwsClients({
  endpoint: env("SPLIT_ENDPOINT"),
  region: env("SPLIT_REGION"),
  credentials: { accessKeyId: "local", secretAccessKey: "local" },
});
const store = new ObjectStore({ s3: clients.s3 }, { bucket: env("SPLIT_BUCKET") });
const queue = new ShardQueue({ sqs: clients.sqs });
const manifest = JSON.parse(await readFile(env("SPLIT_MANIFEST"), "utf8"));
const cpu = process.cpuUsage();
const started = performance.now();
const result = await splitOperation(
  { store, queue, logger: silentLogger() },
  { manifest, workQueueUrl: env("SPLIT_QUEUE") },
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
