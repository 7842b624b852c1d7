/**
 * The policies one `simulate` run compares, all in the same world from the same seed: today's
 * fleet policy and what a user would otherwise do. Each is the live policy with other options
 * or a world that withholds something (a market, in-shard checkpoints) — never other code.
 */
import type { FleetPolicyOptions } from "../scheduler/fleet/policy.ts";

export interface Variant {
  name: string;
  description: string;
  /** Whether the world sells spot / on-demand capacity to this policy. */
  spot: boolean;
  onDemand: boolean;
  /** Whether shards checkpoint inside (false: a reclaimed shard restarts from its first row). */
  checkpoints: boolean;
  /** One big on-demand instance per operation (bigInstanceFactor workers in one machine). */
  oneInstance?: boolean;
  /** Fleet policy options over the defaults (pools, sizes and caps come from the world). */
  policy?: Partial<Omit<FleetPolicyOptions, "pools">>;
}

/** No straggler ever: the thresholds are out of reach. */
const NO_STRAGGLERS = { stragglerFactor: 1e12, stragglerInterruptions: 1e9 } as const;

export const SHARDFLEET: Variant = {
  name: "shardfleet",
  description:
    "today's policy: spot in batches of 5–6, pool cooling, on-demand fallback, checkpoints, stragglers",
  spot: true,
  onDemand: true,
  checkpoints: true,
};

export const ALL_ON_DEMAND: Variant = {
  name: "all-on-demand",
  description: "the same fleet, on-demand only",
  spot: false,
  onDemand: true,
  checkpoints: true,
};

export const BASELINES: readonly Variant[] = [
  ALL_ON_DEMAND,
  {
    name: "spot-no-fallback",
    description: "spot only: no on-demand fallback, no on-demand straggler capacity",
    spot: true,
    onDemand: false,
    checkpoints: true,
  },
  {
    name: "spot-no-checkpoints",
    description: "a reclaimed shard restarts from its first row (AWS Batch, SkyPilot managed jobs)",
    spot: true,
    onDemand: true,
    checkpoints: false,
  },
  {
    name: "no-stragglers",
    description: "today's policy without the straggler policy",
    spot: true,
    onDemand: true,
    checkpoints: true,
    policy: NO_STRAGGLERS,
  },
  {
    name: "one-instance",
    description: "one big on-demand instance per operation (the original Excel-to-Cloud design)",
    spot: false,
    onDemand: true,
    checkpoints: true,
    oneInstance: true,
    policy: { maxStragglerInstances: 0, ...NO_STRAGGLERS },
  },
];

/** Every variant of a standard run, today's policy first. */
export function standardVariants(): Variant[] {
  return [SHARDFLEET, ...BASELINES];
}
