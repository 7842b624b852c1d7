/**
 * What the simulator models of the world, as one zod schema with defaults (the CLI and the
 * tests parse through it, so a bad value is a clear message naming the field). Only the world
 * is modelled here; what the fleet does comes from the live policy.
 */
import { z } from "zod";
import { DEFAULT_LAUNCH_CONCURRENCY } from "../scheduler/fleet/fleet-manager/decision-runner.ts";

/** Spot Instance Advisor's published bands of monthly interruption frequency, in percent. */
export const BANDS = {
  "<5": { lo: 0, hi: 5 },
  "5-10": { lo: 5, hi: 10 },
  "10-15": { lo: 10, hi: 15 },
  "15-20": { lo: 15, hi: 20 },
  ">20": { lo: 20, hi: 30 },
} as const;
export type Band = keyof typeof BANDS;
export const bandNames = Object.keys(BANDS) as Band[];

const HOURS_PER_MONTH = 730;

export const simParamsSchema = z.strictObject({
  shards: z.number().int().min(1).max(10_000_000).default(1000),
  rowsPerShard: z.number().int().min(1).max(1_000_000).default(200),
  /** Mean time one row takes on one shard slot (ms): a shard takes about rowsPerShard × this. */
  rowMs: z.number().positive().max(3_600_000).default(600),
  /** Spread of shard times (sigma of a log-normal with mean 1, drawn once per shard). */
  shardTimeSigma: z.number().min(0).max(3).default(0.25),
  /** Fraction of shards that are slow (a slow row source): they take `slowFactor` × longer. */
  slowFraction: z.number().min(0).max(1).default(0.002),
  slowFactor: z.number().min(1).max(1000).default(5),
  /** Fraction of instances that are slow (a noisy host): every row on them takes `slowHostFactor` × longer. */
  slowHostFraction: z.number().min(0).max(1).default(0.01),
  slowHostFactor: z.number().min(1).max(1000).default(3),
  /** The operation's checkpoint rule (spec.checkpoint): every N rows or T seconds, first wins. */
  checkpointEveryRows: z.number().int().min(1).default(100),
  checkpointEverySeconds: z.number().positive().default(15),
  /** Fixed cost of starting an attempt (read the checkpoint and the input slice), ms. */
  attemptOverheadMs: z.number().min(0).default(1000),
  maxInstances: z.number().int().min(1).max(100_000).default(50),
  shardsPerInstance: z.number().int().min(1).max(64).default(2),
  /** Spot Advisor band of monthly interruption frequency; the band's midpoint is used. */
  band: z.enum(bandNames as [Band, ...Band[]]).default("5-10"),
  /**
   * The band's monthly rate is multiplied by this: runs last hours, a monthly rate would show
   * almost no reclaim. Stated in every output.
   */
  rateScale: z.number().min(0).max(10_000_000).default(100),
  /** Fraction of interruptions that come with the two-minute notice; the rest kill outright. */
  noticeFraction: z.number().min(0).max(1).default(0.8),
  noticeMs: z.number().min(0).default(120_000),
  /** Spot price as a fraction of on-demand at the start. */
  spotRatio: z.number().positive().max(1).default(0.3),
  /** Spot prices move hourly by a log-normal step of this sigma (capped at on-demand). */
  spotVolatility: z.number().min(0).max(2).default(0.05),
  /** Instance types × availability zones = the pools, in preference order. */
  instanceTypes: z.array(z.string().min(1)).min(1).default(["c6i.large", "c5.large", "m6i.large"]),
  availabilityZones: z.array(z.string().min(1)).min(1).default(["a", "b", "c"]),
  /** Spot instances one pool can hold at once. */
  poolSpotCapacity: z.number().int().min(0).default(5000),
  /** Spot capacity outages per pool per hour, and their mean length (ms). */
  outagesPerPoolHour: z.number().min(0).default(0.2),
  outageMeanMs: z.number().min(0).default(1_200_000),
  /** How long a CreateFleet call takes. */
  createFleetLatencyMs: z.number().min(0).default(1000),
  /**
   * CreateFleet calls of one plan in flight at once: the live fleet manager's option
   * (SHARDFLEET_LAUNCH_CONCURRENCY), with its default.
   */
  launchConcurrency: z.number().int().min(1).max(50).default(DEFAULT_LAUNCH_CONCURRENCY),
  /** From a launch's return to the worker polling: boot, uniform in [min, max] ms. */
  bootMinMs: z.number().min(0).default(25_000),
  bootMaxMs: z.number().min(0).default(60_000),
  /** A message whose worker died unannounced reappears after this (SHARDFLEET_VISIBILITY_TIMEOUT_S). */
  visibilityTimeoutMs: z.number().min(0).default(60_000),
  /** The fleet manager's pass interval (SHARDFLEET_FLEET_INTERVAL). */
  planIntervalMs: z.number().int().min(100).default(5000),
  /** Size of the one-instance-per-operation baseline's machine, in worker instances. */
  bigInstanceFactor: z.number().int().min(1).max(256).default(16),
  /** The account's spot vCPU quota (a quota, not a model input). */
  spotVcpuQuota: z.number().int().min(0).default(5000),
  /** Assumed sustained CreateFleet calls per second before EC2 throttles (check the account's). */
  createFleetPerSecond: z.number().positive().default(5),
  /** Seed of every random draw: the same seed, the same run. */
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 32 - 1)
    .default(1),
  /** Stop a run after this much simulated time (ms) and report it unfinished. */
  horizonMs: z
    .number()
    .positive()
    .default(90 * 24 * 3_600_000),
});

export type SimParamsInput = z.input<typeof simParamsSchema>;
export type SimParams = Readonly<z.output<typeof simParamsSchema>>;

/** Parses parameters; a bad one throws an Error whose message names the field. */
export function parseSimParams(input: SimParamsInput): SimParams {
  const parsed = simParamsSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`simulation parameter ${issue.path.join(".") || "(params)"}: ${issue.message}`);
  }
  if (parsed.data.bootMaxMs < parsed.data.bootMinMs) {
    throw new Error("simulation parameter bootMaxMs: must be at least bootMinMs");
  }
  return Object.freeze(parsed.data);
}

/** The interruption model, stated: per-instance hazard per hour and how it was scaled. */
export interface InterruptionRate {
  band: Band;
  monthlyPercent: number;
  rateScale: number;
  perInstanceHour: number;
  statement: string;
}

/**
 * Band → hazard: the band's midpoint p is the fraction of spot instances interrupted in a month
 * (730 h), so the constant hazard is −ln(1 − p)/730 per hour, then × rateScale.
 */
export function interruptionRate(p: Pick<SimParams, "band" | "rateScale">): InterruptionRate {
  const { lo, hi } = BANDS[p.band];
  const monthlyPercent = (lo + hi) / 2;
  const perInstanceHour = (-Math.log(1 - monthlyPercent / 100) / HOURS_PER_MONTH) * p.rateScale;
  const meanHours = perInstanceHour > 0 ? 1 / perInstanceHour : Number.POSITIVE_INFINITY;
  return {
    band: p.band,
    monthlyPercent,
    rateScale: p.rateScale,
    perInstanceHour,
    statement:
      `interruptions: band ${p.band} % per month (midpoint ${monthlyPercent} %), rate scaled ` +
      `×${p.rateScale} for a short run → ${(perInstanceHour * 100).toFixed(3)} % of spot instances per hour ` +
      `(mean life ${Number.isFinite(meanHours) ? `${meanHours.toFixed(1)} h` : "∞"})`,
  };
}
