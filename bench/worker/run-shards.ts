/**
 * One worker's shards, alone in its own process (so its CPU is the worker's, not the S3/SQS
 * server's): a ShardProcessor runs every message of BENCH_MESSAGES in turn (BENCH_IN_FLIGHT at a
 * time); prints JSON
 * WorkerFigures (bench/worker/measure.ts).
 */
import { readdir, readFile, writeFile } from "node:fs/promises";
import { Session } from "node:inspector/promises";
import { silentLogger } from "../../src/shared/logger.ts";
import type { ShardMessage } from "../../src/shared/schemas/shard.ts";
import { ShardProcessor } from "../../src/worker/shard-processor.ts";
import { childAws, childEnv } from "../child.ts";
import { statCpuMs } from "../proc.ts";

const { clients, store } = childAws();
const messages = JSON.parse(await readFile(childEnv("BENCH_MESSAGES"), "utf8")) as ShardMessage[];
const processor = new ShardProcessor(
  { store, logger: silentLogger() },
  { instanceId: "i-bench", market: "spot", pluginDir: childEnv("BENCH_PLUGINS") },
);
const cpuMs = (since?: NodeJS.CpuUsage) => {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1000;
};
// BENCH_PROFILE: a V8 CPU profile of this thread from the second shard on (start-up left out).
const profile = process.env.BENCH_PROFILE;
const session = profile ? new Session() : undefined;
const started = performance.now();
let first = 0;
let rest = 0;
let restRows = 0;
let rows = 0;
// BENCH_IN_FLIGHT: shards run N at a time (in groups), as a worker runs its shardsInFlight: the
// peak RSS of shards that finish together (one at a time hides it). "First shard": first group.
const inFlight = Number(process.env.BENCH_IN_FLIGHT ?? 1);
for (let k = 0; k < messages.length; k += inFlight) {
  const group = messages.slice(k, k + inFlight);
  const before = process.cpuUsage();
  const outcomes = await Promise.all(
    group.map((message) =>
      processor.process(JSON.stringify(message), { signal: new AbortController().signal }),
    ),
  );
  for (const [g, outcome] of outcomes.entries()) {
    if (outcome.kind !== "delete" || outcome.result?.status !== "committed") {
      throw new Error(`shard ${group[g]?.shardId} ended ${JSON.stringify(outcome)}`);
    }
  }
  const used = cpuMs(before);
  const n = group.reduce((sum, message) => sum + message.end - message.start, 0);
  rows += n;
  if (k === 0) {
    first = used;
    if (session) {
      session.connect();
      await session.post("Profiler.setSamplingInterval", { interval: 200 });
      await session.post("Profiler.enable");
      await session.post("Profiler.start");
    }
  } else {
    rest += used;
    restRows += n;
  }
}
const wallMs = performance.now() - started;
if (session && profile) {
  const { profile: taken } = await session.post("Profiler.stop");
  await writeFile(profile, JSON.stringify(taken));
  session.disconnect();
}
/** CPU ms of this process's threads by name (the main thread: "main"), from /proc (Linux; empty elsewhere). */
async function threadCpu(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const tasks = await readdir("/proc/self/task").catch(() => [] as string[]);
  for (const tid of tasks) {
    const stat = await readFile(`/proc/self/task/${tid}/stat`, "utf8").catch(() => "");
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const name = tid === String(process.pid) ? "main" : comm;
    const ms = statCpuMs(stat);
    if (ms > 0) out[name] = (out[name] ?? 0) + ms;
  }
  return out;
}
const threads = await threadCpu();
await processor.close();
clients.destroy();
process.stdout.write(
  `${JSON.stringify({
    rows,
    shards: messages.length,
    firstCpuMs: first,
    restCpuMs: rest,
    restRows,
    wallMs,
    peakRssMb: process.resourceUsage().maxRSS / 1024,
    threads,
  })}\n`,
);
