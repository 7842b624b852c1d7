/**
 * Whether a simulated plan stays inside the AWS limits that bind at scale, and where it would
 * hit them. Pure: it reads a run's peaks (src/sim/engine.ts) and the world's parameters. The
 * S3 prefixes are named through the one key layout (src/shared/keys.ts).
 */
import { keys } from "../shared/keys.ts";
import type { SimResult } from "./engine.ts";
import { vcpusOf } from "./engine.ts";
import type { SimParams } from "./params.ts";

/** SQS: messages per SendMessageBatch call. */
export const SQS_BATCH = 10;
/** SQS: in-flight (received, not deleted) messages per standard queue. */
export const SQS_IN_FLIGHT = 120_000;
/** S3: PUT/COPY/POST/DELETE requests per second per partitioned prefix. */
export const S3_PUTS_PER_PREFIX = 3500;

export interface QuotaCheck {
  limit: string;
  value: number;
  max: number;
  ok: boolean;
  note: string;
}

export function quotaReport(r: SimResult, p: SimParams): QuotaCheck[] {
  // Any operation id: only the layout of the prefix matters.
  const op = "OPERATION";
  const perInstance = vcpusOf(p.instanceTypes[0] ?? "x.large");
  const createRate =
    p.createFleetLatencyMs > 0
      ? (1000 * p.launchConcurrency) / p.createFleetLatencyMs
      : Number.POSITIVE_INFINITY;
  return [
    {
      limit: "SQS SendMessageBatch entries per call",
      value: SQS_BATCH,
      max: SQS_BATCH,
      ok: true,
      note: `the splitter sends ${Math.ceil(p.shards / SQS_BATCH).toLocaleString("en-US")} calls of ${SQS_BATCH}`,
    },
    {
      limit: "SQS in-flight messages per queue",
      value: r.peakInFlightMessages,
      max: SQS_IN_FLIGHT,
      ok: r.peakInFlightMessages <= SQS_IN_FLIGHT,
      note: `one per running shard attempt; hit at ${Math.floor(SQS_IN_FLIGHT / p.shardsPerInstance).toLocaleString("en-US")} instances × ${p.shardsPerInstance} shards`,
    },
    {
      limit: "S3 PUT/s per prefix",
      value: Math.round(r.peakPutsPerSecond),
      max: S3_PUTS_PER_PREFIX,
      ok: r.peakPutsPerSecond <= S3_PUTS_PER_PREFIX,
      note: `checkpoints and chunks under ${keys.scratchShardsPrefix(op)}, done markers and attempts under ${keys.shardsPrefix(op)} — one prefix each until S3 partitions it (it does under sustained load, with 503 SlowDown meanwhile)`,
    },
    {
      limit: "EC2 CreateFleet calls/s (assumed)",
      value: Number(createRate.toFixed(2)),
      max: p.createFleetPerSecond,
      ok: createRate <= p.createFleetPerSecond,
      note: `${r.createFleetCalls.toLocaleString("en-US")} calls, up to ${p.launchConcurrency} at once (SHARDFLEET_LAUNCH_CONCURRENCY; ${p.createFleetLatencyMs} ms each); the limit is an assumption, check the account's EC2 API throttling`,
    },
    {
      limit: "EC2 spot vCPUs (account quota)",
      value: r.peakSpotVcpus,
      max: p.spotVcpuQuota,
      ok: r.peakSpotVcpus <= p.spotVcpuQuota,
      note: `hit at ${Math.floor(p.spotVcpuQuota / perInstance).toLocaleString("en-US")} spot instances of ${perInstance} vCPUs; beyond it EC2 refuses spot launches (the simulation reports the quota, it does not enforce it)`,
    },
  ];
}
