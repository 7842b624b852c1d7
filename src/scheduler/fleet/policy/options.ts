/**
 * The fleet policy's options: what operators set (pools, caps, timeouts), their defaults, and
 * the one check that turns them into a `ResolvedFleetPolicy`. A leaf: every section of the
 * policy takes the resolved options, so they live apart from all of them.
 */
import { z } from "zod";
import type { Pool } from "../../../shared/capacity.ts";
import { ConfigError } from "../../../shared/errors.ts";

export interface FleetPolicyOptions {
  /** Where capacity comes from (instance types × subnets), in preference order; both markets. */
  pools: Pool[];
  /** Shards one instance works at once (the worker's SHARDFLEET_SHARDS_IN_FLIGHT). @default 2 */
  shardsPerInstance?: number;
  /** Live plus requested instances never exceed this. @default 20 */
  maxInstances?: number;
  /**
   * The summed hourly price (USD) of live plus requested instances never exceeds this. A
   * request is priced at its most expensive pool. @default no cap
   */
  maxHourlyUsd?: number;
  /** A pool that reported a capacity error is skipped for this long, per market. @default 300_000 */
  coolingMs?: number;
  /**
   * An operation that has work while the fleet has no live instance at all fails after this long
   * (counted from the first plan that saw it so); before that it is `waiting-for-capacity`.
   * @default 300_000
   */
  capacityDeadlineMs?: number;
  /** A shard running longer than this × the median completed shard time is a straggler. @default 2 */
  stragglerFactor?: number;
  /** ...but only once it has run at least this long. @default 60_000 */
  stragglerMinMs?: number;
  /** A shard interrupted (reclaimed) this many times is a straggler. @default 2 */
  stragglerInterruptions?: number;
  /** On-demand instances launched for stragglers, across all operations. @default 5 */
  maxStragglerInstances?: number;
  /**
   * An instance without a shard for this long is terminated, counted from its worker's report
   * that it is up (or its last shard), never from launch. @default 180_000
   */
  idleTimeoutMs?: number;
  /**
   * An instance whose worker has not reported up (nor run a shard) this long after launch is
   * terminated as `unresponsive`: it failed to boot or start. Longer than a boot on a busy host.
   * @default 600_000
   */
  bootDeadlineMs?: number;
  /**
   * A tagged instance the scheduler does not know is an orphan once it is this old (a younger one
   * may come from a launch whose result is still being recorded). @default 60_000
   */
  orphanGraceMs?: number;
  /**
   * Caps per tenant, over the instances launched for the tenant's operations (within the
   * fleet's caps above). @default {} (no tenant has caps of its own)
   */
  tenantCaps?: Readonly<Record<string, TenantFleetCaps>>;
  /** Caps of a tenant not in `tenantCaps`. @default {} (no caps) */
  defaultTenantCaps?: TenantFleetCaps;
}

/** One tenant's share of the fleet. */
export interface TenantFleetCaps {
  /** Live plus requested instances of its operations never exceed this. @default no cap */
  maxInstances?: number;
  /** Their summed hourly price (USD) never exceeds this. @default no cap */
  maxHourlyUsd?: number;
}

/** Options with every default filled in (`maxHourlyUsd` stays absent when there is no cap). */
export type ResolvedFleetPolicy = Readonly<
  Required<Omit<FleetPolicyOptions, "maxHourlyUsd">> & { maxHourlyUsd?: number }
>;

/** A tenant's caps under the resolved options (its own, else the default). */
export function tenantCapsOf(o: ResolvedFleetPolicy, tenant: string): TenantFleetCaps {
  return Object.hasOwn(o.tenantCaps, tenant) ? o.tenantCaps[tenant]! : o.defaultTenantCaps;
}

/** An instance whose worker never reports up goes this long after launch (bootDeadlineMs). */
export const DEFAULT_BOOT_DEADLINE_MS = 600_000;

const ms = z.number().int().min(0);
const tenantCapsSchema = z.strictObject({
  maxInstances: z.number().int().min(0).optional(),
  maxHourlyUsd: z.number().min(0).optional(),
});
const poolSchema = z.strictObject({
  instanceType: z.string().min(1),
  subnetId: z.string().min(1).optional(),
  availabilityZone: z.string().min(1).optional(),
});
const optionsSchema = z.strictObject({
  pools: z.array(poolSchema),
  shardsPerInstance: z.number().int().min(1).default(2),
  maxInstances: z.number().int().min(0).default(20),
  maxHourlyUsd: z.number().min(0).optional(),
  coolingMs: ms.default(300_000),
  capacityDeadlineMs: ms.default(300_000),
  stragglerFactor: z.number().min(1).default(2),
  stragglerMinMs: ms.default(60_000),
  stragglerInterruptions: z.number().int().min(1).default(2),
  maxStragglerInstances: z.number().int().min(0).default(5),
  idleTimeoutMs: ms.default(180_000),
  bootDeadlineMs: ms.default(DEFAULT_BOOT_DEADLINE_MS),
  orphanGraceMs: ms.default(60_000),
  tenantCaps: z.record(z.string(), tenantCapsSchema).default({}),
  defaultTenantCaps: tenantCapsSchema.default({}),
});

/** Fills in defaults and checks the options. Throws ConfigError naming the bad option. */
export function resolveFleetPolicy(options: FleetPolicyOptions): ResolvedFleetPolicy {
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const name = issue.path.map(String).join(".") || "(options)";
    throw new ConfigError(`fleet option ${name}: ${issue.message}`, { details: { option: name } });
  }
  return Object.freeze(parsed.data);
}
