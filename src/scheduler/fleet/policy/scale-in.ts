/**
 * Scale-in: which known instances to terminate — idle past the timeout, left over by an ended
 * operation, stopped, or (first) idle with a rebalance recommendation when the backlog does not
 * need them — and which unknown instances tagged with the fleet are orphans. Never a busy one.
 */
import type { InstanceInfo } from "../../../shared/capacity.ts";
import { seconds } from "./format.ts";
import type { ResolvedFleetPolicy } from "./options.ts";
import { backlogOf, desiredInstances } from "./sizing.ts";
import { servesCapacity } from "./spot-signals.ts";
import {
  type FleetInstance,
  isLive,
  type OperationState,
  type TerminateCause,
  type TerminateDecision,
} from "./types.ts";

/**
 * Since when the instance has had nothing to do: its last shard or its worker's report that it
 * is up, whichever is later; undefined when neither came yet (still booting, or never will).
 */
function idleSince(instance: Pick<FleetInstance, "lastBusyAt" | "reportedAt">): number | undefined {
  const { lastBusyAt, reportedAt } = instance;
  if (lastBusyAt === undefined) return reportedAt;
  return reportedAt === undefined ? lastBusyAt : Math.max(lastBusyAt, reportedAt);
}

/**
 * Terminations among known instances; a busy instance (`runningShards > 0`) is never one.
 * - `operation-ended`: live, idle, and its operation is no longer active (nothing else asked for it);
 * - `idle`: live and idle for at least `idleTimeoutMs`, counted from its worker's report that it
 *   is up or its last shard (a worker slow to start is not idle while it starts);
 * - `unresponsive`: live, and its worker neither reported up nor ran a shard within
 *   `bootDeadlineMs` of launch;
 * - `stopped`: a stopped instance does no work and would resume unasked.
 */
export function planScaleIn(
  instances: readonly FleetInstance[],
  activeOperationIds: ReadonlySet<string>,
  now: number,
  options: Pick<ResolvedFleetPolicy, "idleTimeoutMs" | "bootDeadlineMs">,
): TerminateDecision[] {
  const { bootDeadlineMs } = options;
  const by: Record<Exclude<TerminateCause, "orphan" | "rebalance">, string[]> = {
    "operation-ended": [],
    idle: [],
    unresponsive: [],
    stopped: [],
  };
  for (const i of instances) {
    if (i.runningShards > 0) continue;
    if (i.state === "stopped") by.stopped.push(i.id);
    else if (!isLive(i.state)) continue;
    else if (!activeOperationIds.has(i.operationId)) by["operation-ended"].push(i.id);
    else {
      const since = idleSince(i);
      if (since === undefined) {
        if (now - i.launchedAt >= bootDeadlineMs) by.unresponsive.push(i.id);
      } else if (now - since >= options.idleTimeoutMs) by.idle.push(i.id);
    }
  }
  const reasons = {
    "operation-ended": "their operation ended and nothing else needs them",
    idle: `idle for ${seconds(options.idleTimeoutMs)} or more`,
    unresponsive: `their worker did not report up within ${seconds(bootDeadlineMs)} of launch`,
    stopped: "stopped instances do no work",
  };
  return (Object.keys(by) as (keyof typeof by)[])
    .filter((cause) => by[cause].length > 0)
    .map((cause) => ({ type: "terminate", ids: by[cause], cause, reason: reasons[cause] }));
}

/**
 * Scale-in prefers instances with a rebalance recommendation: once an operation has more
 * capacity than its backlog calls for, its idle recommended workers go at once rather than after
 * the idle timeout — nothing needs them and they are the likeliest to be interrupted. Never a busy
 * one, and never below what the backlog calls for, so this never causes a launch. Instances
 * warned of an interruption are not capacity and are left to their reclaim.
 */
export function planRebalanceScaleIn(
  instances: readonly FleetInstance[],
  operations: readonly OperationState[],
  options: Pick<ResolvedFleetPolicy, "shardsPerInstance" | "maxInstances">,
): TerminateDecision[] {
  const ids: string[] = [];
  for (const op of operations) {
    const serving = instances.filter(
      (i) => i.operationId === op.id && i.role === "worker" && isLive(i.state) && servesCapacity(i),
    );
    const desired = desiredInstances(
      backlogOf(op),
      options.shardsPerInstance,
      options.maxInstances,
    );
    const surplus = serving.length - desired;
    if (surplus <= 0) continue;
    const candidates = serving
      .filter((i) => i.runningShards === 0 && i.rebalanceRecommendedAt !== undefined)
      .sort(
        (a, b) => a.rebalanceRecommendedAt! - b.rebalanceRecommendedAt! || (a.id < b.id ? -1 : 1),
      );
    ids.push(...candidates.slice(0, surplus).map((i) => i.id));
  }
  if (ids.length === 0) return [];
  return [
    {
      type: "terminate",
      ids,
      cause: "rebalance",
      reason:
        "idle, not needed by the backlog, and at elevated risk of interruption (rebalance recommendation)",
    },
  ];
}

/**
 * Instances tagged as ours that the scheduler does not know, still alive, and older than the
 * grace period: left over from a crashed scheduler or a launch whose answer was lost.
 */
export function findOrphans(
  discovered: readonly InstanceInfo[],
  knownIds: ReadonlySet<string>,
  now: number,
  graceMs: number,
): InstanceInfo[] {
  return discovered.filter(
    (i) =>
      !knownIds.has(i.instanceId) &&
      i.state !== "terminated" &&
      i.state !== "shutting-down" &&
      now - i.launchedAt >= graceMs,
  );
}
