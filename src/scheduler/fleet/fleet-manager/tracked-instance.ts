/**
 * An instance as the fleet manager tracks it — launched by it or adopted from a fleet record, and
 * not yet seen end — and its three mappings: from and to its entry in the operation's fleet
 * record (S3), and to the policy's `FleetInstance`. Plain data and pure functions: the roster,
 * the fleet records and the loop all speak this type, so it sits in a leaf of their own.
 */
import type { InstanceState } from "../../../shared/capacity.ts";
import type { FleetInstanceRecord } from "../../../shared/schemas/fleet.ts";
import type { InstanceActivity } from "../observe.ts";
import type { FleetInstance } from "../policy.ts";

/** An instance this manager launched (or adopted from a fleet record) and has not seen end. */
export interface TrackedInstance {
  id: string;
  operationId: string;
  role: FleetInstance["role"];
  market: FleetInstance["market"];
  instanceType: string;
  availabilityZone?: string;
  state: InstanceState;
  launchedAt: number;
  /** When it entered `state`. */
  since: number;
  lastBusyAt?: number;
  /**
   * When this manager first saw its worker report (src/shared/records/worker-report.ts) or run a
   * shard, on its own clock; absent until then. Kept in memory only: after a restart the report
   * is read again.
   */
  reportedAt?: number;
  /** Set when this manager asked for the termination (so its end is not a loss). */
  terminated?: string;
  endReason?: string;
  /** Spot signals from EventBridge (ms): see FleetInstance. */
  interruptionWarnedAt?: number;
  rebalanceRecommendedAt?: number;
}

/** The instance an operation's fleet record lists, taken over after a restart. */
export function trackedFromRecord(operationId: string, i: FleetInstanceRecord): TrackedInstance {
  return {
    id: i.id,
    operationId,
    role: i.role,
    market: i.market,
    instanceType: i.type,
    ...(i.availabilityZone ? { availabilityZone: i.availabilityZone } : {}),
    state: i.state,
    launchedAt: Date.parse(i.launchedAt),
    since: Date.parse(i.since),
    // Its end was already asked for (or seen): when it shows terminated, that is no loss.
    ...(i.endReason ? { terminated: "recorded", endReason: i.endReason } : {}),
    ...(i.interruptionWarnedAt ? { interruptionWarnedAt: Date.parse(i.interruptionWarnedAt) } : {}),
    ...(i.rebalanceRecommendedAt
      ? { rebalanceRecommendedAt: Date.parse(i.rebalanceRecommendedAt) }
      : {}),
  };
}

/** The instance's entry in its operation's fleet record. */
export function toInstanceRecord(t: TrackedInstance): FleetInstanceRecord {
  return {
    id: t.id,
    market: t.market,
    type: t.instanceType,
    role: t.role,
    ...(t.availabilityZone ? { availabilityZone: t.availabilityZone } : {}),
    state: t.state,
    launchedAt: new Date(t.launchedAt).toISOString(),
    since: new Date(t.since).toISOString(),
    ...(t.endReason ? { endReason: t.endReason } : {}),
    ...(t.interruptionWarnedAt !== undefined
      ? { interruptionWarnedAt: new Date(t.interruptionWarnedAt).toISOString() }
      : {}),
    ...(t.rebalanceRecommendedAt !== undefined
      ? { rebalanceRecommendedAt: new Date(t.rebalanceRecommendedAt).toISOString() }
      : {}),
  };
}

/**
 * The instance as the policy sees it: its running shards from this pass's activity, and when its
 * worker reported (idle time counts from then; until then the policy's boot deadline applies).
 */
export function toFleetInstance(
  t: TrackedInstance,
  activity: ReadonlyMap<string, InstanceActivity>,
): FleetInstance {
  return {
    id: t.id,
    operationId: t.operationId,
    role: t.role,
    market: t.market,
    instanceType: t.instanceType,
    state: t.state,
    launchedAt: t.launchedAt,
    runningShards: activity.get(t.id)?.running ?? 0,
    ...(t.lastBusyAt !== undefined ? { lastBusyAt: t.lastBusyAt } : {}),
    ...(t.reportedAt !== undefined ? { reportedAt: t.reportedAt } : {}),
    ...(t.interruptionWarnedAt !== undefined
      ? { interruptionWarnedAt: t.interruptionWarnedAt }
      : {}),
    ...(t.rebalanceRecommendedAt !== undefined
      ? { rebalanceRecommendedAt: t.rebalanceRecommendedAt }
      : {}),
  };
}
