/**
 * An operation's fleet record (`keys.fleet(op)`): the instances launched for it and what the
 * fleet manager did about it (launches, capacity errors, fallbacks, straggler copies,
 * terminations), and whether it waits for capacity. The fleet manager is its only writer
 * (src/scheduler/fleet/fleet-manager/fleet-records.ts); the API shows it.
 */
import { z } from "zod";
import { instanceRoles, instanceStates, markets } from "../capacity.ts";

const timestamp = z.iso.datetime();

export const fleetEventKinds = [
  /** A launch request went out (market, count, pools, why). */
  "launch-requested",
  /** Everything asked for launched. */
  "launch-fulfilled",
  /** Some launched, some did not (capacity errors follow). */
  "launch-partial",
  /** The request launched nothing, or the call itself failed. */
  "launch-failed",
  /** A pool reported no capacity: it cools, the next request avoids it. */
  "capacity-error",
  /** Every spot pool is cooling: worker capacity is bought on-demand. */
  "fallback-on-demand",
  /** A straggler's message was copied to the straggler queue. */
  "straggler-copied",
  /** The fleet manager terminated instances (idle, operation ended, orphan, stopped). */
  "instance-terminated",
  /** An instance ended without being asked to (spot reclaim, crash). */
  "instance-lost",
  /** No capacity at all for the operation's work; it waits. */
  "waiting-for-capacity",
  /** Capacity is live again; the operation no longer waits. */
  "capacity-restored",
  /** The fleet manager failed the operation (capacity deadline, config or permission error). */
  "operation-failed",
  /** EC2 warned (EventBridge) that it interrupts an instance in two minutes: it is replaced now. */
  "spot-interruption-warning",
  /** EC2 recommended rebalancing an instance (EventBridge): scaled in first, not replaced. */
  "rebalance-recommendation",
  /** The self-healing sweep sent shards whose message was lost to the work queue again. */
  "shards-redriven",
  /** The request budget keeps fewer instances busy than the backlog calls for: no more launched. */
  "source-limited",
] as const;
export type FleetEventKind = (typeof fleetEventKinds)[number];

export const fleetEventSchema = z.object({
  at: timestamp,
  kind: z.enum(fleetEventKinds),
  /** One line for people. */
  message: z.string(),
});
export type FleetEvent = z.infer<typeof fleetEventSchema>;

export const fleetInstanceRecordSchema = z.object({
  id: z.string(),
  market: z.enum(markets),
  /** Instance type, e.g. "c7g.large". */
  type: z.string(),
  role: z.enum(instanceRoles),
  availabilityZone: z.string().optional(),
  state: z.enum(instanceStates),
  launchedAt: timestamp,
  /** When it entered `state`. */
  since: timestamp,
  /** Why it ended, once it has. */
  endReason: z.string().optional(),
  /** When EC2 warned (EventBridge) that it interrupts it; from then on it is no capacity. */
  interruptionWarnedAt: timestamp.optional(),
  /** When EC2 recommended rebalancing it (EventBridge). */
  rebalanceRecommendedAt: timestamp.optional(),
});
export type FleetInstanceRecord = z.infer<typeof fleetInstanceRecordSchema>;

/**
 * The fleet manager found no capacity for the operation's work: since when, and why. A condition
 * of the fleet, not a lifecycle state: the operation view shows it as `waiting-for-capacity`.
 */
export const capacityWaitSchema = z.object({ since: timestamp, reason: z.string() });
export type CapacityWait = z.infer<typeof capacityWaitSchema>;

/** Events kept per operation; older ones are dropped (and counted) beyond this. */
export const MAX_FLEET_EVENTS = 500;

export const fleetRecordSchema = z.object({
  v: z.literal(1),
  operationId: z.string(),
  instances: z.array(fleetInstanceRecordSchema),
  /** Oldest first. */
  events: z.array(fleetEventSchema),
  /** Events dropped to stay within MAX_FLEET_EVENTS. */
  droppedEvents: z.number().int().nonnegative(),
  /** Present while the operation waits for capacity. */
  waiting: capacityWaitSchema.optional(),
  updatedAt: timestamp,
});
export type FleetRecord = z.infer<typeof fleetRecordSchema>;
