/**
 * The fleet policy: pure functions of observed state and a time `now` (ms since the epoch). No
 * I/O, no clock, no randomness — the fleet manager loop and the simulator call the same code.
 *
 * The loop's whole job:
 *   1. observe a `FleetState` (operations' shard counts, known instances, prices) and pass the
 *      `memory` the previous plan returned (`emptyFleetMemory()` on start);
 *   2. `planFleet(state, now, options)` → `{ decisions, memory }`; keep `memory`;
 *   3. carry the decisions out in order through the capacity port and the queues: a `launch`
 *      becomes `toLaunchRequest(...)`, whose result goes back through `recordLaunchOutcome`
 *      (or `recordLaunchError` when the call threw). When a launch reports errors, re-plan
 *      before carrying out the remaining launches: they were planned assuming it would succeed.
 *
 * Spot signals from EventBridge (interruption warnings, rebalance recommendations) reach the
 * policy as observed state: marks on `FleetInstance` (`withSpotSignal` sets them, idempotently).
 *
 * This module is the policy's entry: `planFleet`, the round that puts the sections together and
 * decides capacity statuses (waiting-for-capacity, the capacity deadline, failing an operation),
 * and the names callers use. The sections live in ./policy/ and never import this module:
 *   types.ts (state, memory, decisions) · options.ts · sizing.ts (backlog, caps, prices) ·
 *   batches.ts (spot batches of five or six) · market-choice.ts (pool cooling, on-demand
 *   fallback) · stragglers.ts · scale-in.ts (incl. rebalance scale-in and orphans) ·
 *   spot-signals.ts · source-cap.ts (what a request budget keeps busy) · launch-planning.ts
 *   (one operation's launches) · launch-outcomes.ts
 *   (carrying launches out: requests, results back into memory) · format.ts.
 */
import { poolLabel } from "../../shared/capacity.ts";
import { iso, seconds } from "./policy/format.ts";
import { type Ledger, planLaunches, type TenantLedger } from "./policy/launch-planning.ts";
import {
  type FleetPolicyOptions,
  type ResolvedFleetPolicy,
  resolveFleetPolicy,
  tenantCapsOf,
} from "./policy/options.ts";
import { findOrphans, planRebalanceScaleIn, planScaleIn } from "./policy/scale-in.ts";
import { backlogOf, fleetSpendUsd } from "./policy/sizing.ts";
import { findStragglers, stragglerKey } from "./policy/stragglers.ts";
import {
  type FleetDecision,
  type FleetMemory,
  type FleetPlan,
  type FleetState,
  isLive,
  type OperationMemory,
  type OperationState,
  type PoolFailure,
} from "./policy/types.ts";

export {
  fleetInstancesFrom,
  recordLaunchError,
  recordLaunchOutcome,
  toLaunchRequest,
} from "./policy/launch-outcomes.ts";
export {
  type FleetPolicyOptions,
  type ResolvedFleetPolicy,
  resolveFleetPolicy,
  type TenantFleetCaps,
} from "./policy/options.ts";
export { type SourceBudget, type SourceCap, sourceCap } from "./policy/source-cap.ts";
export { withSpotSignal } from "./policy/spot-signals.ts";
export {
  emptyFleetMemory,
  type FleetDecision,
  type FleetInstance,
  type FleetMemory,
  type FleetState,
  isLive,
  type LaunchDecision,
  type OperationState,
  type PoolFailure,
  type PriceTable,
  type RunningShard,
  type SourceLimitedDecision,
  type TerminateDecision,
} from "./policy/types.ts";

/**
 * One planning round: scale-in, straggler copies, launches (straggler capacity first, then
 * worker capacity, operation by operation), then capacity statuses. See the module comment for
 * how the loop uses it. Throws ConfigError only for invalid options.
 */
export function planFleet(state: FleetState, now: number, options: FleetPolicyOptions): FleetPlan {
  const o = resolveFleetPolicy(options);
  const memory = pruneMemory(state.memory, state.operations, now, o.coolingMs);
  const decisions: FleetDecision[] = [];
  const active = new Set(state.operations.map((op) => op.id));

  // Scale-in first: what it frees counts as room for the launches below.
  decisions.push(...planScaleIn(state.instances, active, now, o));
  const scaledIn = new Set(decisions.flatMap((d) => (d.type === "terminate" ? d.ids : [])));
  decisions.push(
    ...planRebalanceScaleIn(
      state.instances.filter((i) => !scaledIn.has(i.id)),
      state.operations.filter((op) => !memory.operations[op.id]?.failed),
      o,
    ),
  );
  if (state.discovered) {
    const known = new Set(state.instances.map((i) => i.id));
    const orphans = findOrphans(state.discovered, known, now, o.orphanGraceMs);
    if (orphans.length > 0) {
      decisions.push({
        type: "terminate",
        ids: orphans.map((i) => i.instanceId),
        cause: "orphan",
        reason: "tagged with this fleet but unknown to the scheduler",
      });
    }
  }
  const gone = new Set(decisions.flatMap((d) => (d.type === "terminate" ? d.ids : [])));
  const live = state.instances.filter((i) => isLive(i.state) && !gone.has(i.id));
  const ledger: Ledger = {
    count: live.length,
    spend: fleetSpendUsd(live, state.prices),
    stragglerInstances: live.filter((i) => i.role === "straggler").length,
  };

  const tenants = tenantLedgers(state.operations, live, state.prices, o);

  const copies = new Set(memory.stragglerCopies);
  for (const op of state.operations) {
    if (memory.operations[op.id]?.failed) continue;
    for (const s of findStragglers(op, now, o, copies)) {
      copies.add(stragglerKey(op.id, s.shardId));
      decisions.push({
        type: "copyToStraggler",
        operationId: op.id,
        shardId: s.shardId,
        reason:
          s.cause === "interrupted"
            ? `interrupted ${o.stragglerInterruptions} times or more`
            : `running ${seconds(s.runningMs)}, over ${seconds(s.thresholdMs ?? 0)} (${o.stragglerFactor}× the median shard time)`,
      });
    }
  }

  const opMemory: Record<string, OperationMemory> = {};
  const statuses: FleetDecision[] = [];
  for (const op of state.operations) {
    const m: OperationMemory = { ...memory.operations[op.id] };
    opMemory[op.id] = m;
    if (m.failed) continue;
    if (m.fatal) {
      statuses.push({
        type: "failOperation",
        operationId: op.id,
        code: m.fatal.kind === "permission" ? "CAPACITY_PERMISSION" : "CAPACITY_CONFIG",
        message: m.fatal.message,
      });
      m.failed = true;
      continue;
    }
    // Starved: work to do and not one live instance anywhere (any instance serves the queue).
    const starved = backlogOf(op) > 0 && live.length === 0;
    if (!starved) {
      if (m.waiting !== undefined) statuses.push({ type: "clearWaiting", operationId: op.id });
      m.unfulfilledSince = undefined;
      m.waiting = undefined;
    } else {
      m.unfulfilledSince ??= now;
      if (now - m.unfulfilledSince >= o.capacityDeadlineMs) {
        const why = m.waiting ?? m.blocked ?? recentFailures(memory.poolFailures, o, now);
        statuses.push({
          type: "failOperation",
          operationId: op.id,
          code: "CAPACITY_DEADLINE",
          message: `no capacity found within ${seconds(o.capacityDeadlineMs)} (waiting since ${iso(m.unfulfilledSince)}): ${why}`,
        });
        m.failed = true;
        continue;
      }
    }
    const { launches, blocked, sourceLimit } = planLaunches(
      op,
      live,
      ledger,
      memory,
      copies,
      state.prices,
      now,
      o,
      op.tenant === undefined ? undefined : tenants.get(op.tenant),
    );
    decisions.push(...launches);
    m.blocked = blocked;
    // The request budget holding launches back: said once when it starts, and once more when
    // the first measurement replaces the one-batch guess — not every plan, and not again when
    // the measurements lapse for a while (workers between shards) and come back.
    const heldBefore = m.sourceLimit;
    if (sourceLimit && (!heldBefore || (!heldBefore.measured && sourceLimit.measured))) {
      statuses.push({
        type: "sourceLimited",
        operationId: op.id,
        instances: sourceLimit.instances,
        reason: sourceLimit.reason,
      });
    }
    m.sourceLimit = sourceLimit
      ? {
          instances: sourceLimit.instances,
          measured: sourceLimit.measured || (heldBefore?.measured ?? false),
        }
      : undefined;
    if (starved && launches.length === 0) {
      const reason = blocked ?? "no capacity could be requested";
      if (m.waiting !== reason) {
        statuses.push({
          type: "setWaiting",
          operationId: op.id,
          since: m.unfulfilledSince!,
          reason,
        });
      }
      m.waiting = reason;
    }
  }
  decisions.push(...statuses);
  return {
    decisions,
    memory: {
      poolFailures: memory.poolFailures,
      operations: opMemory,
      stragglerCopies: [...copies],
    },
  };
}

/**
 * Each tenant's live instances and spend (instances count for the tenant of the operation they
 * were launched for), for tenants with a cap. An instance of an operation no longer observed
 * counts for nobody: it is being scaled in.
 */
function tenantLedgers(
  operations: readonly OperationState[],
  live: readonly { operationId: string; market: "spot" | "on-demand"; instanceType: string }[],
  prices: FleetState["prices"],
  o: ResolvedFleetPolicy,
): Map<string, TenantLedger> {
  const ledgers = new Map<string, TenantLedger>();
  const tenantOfOp = new Map<string, string>();
  for (const op of operations) {
    if (op.tenant === undefined) continue;
    tenantOfOp.set(op.id, op.tenant);
    const caps = tenantCapsOf(o, op.tenant);
    if (caps.maxInstances === undefined && caps.maxHourlyUsd === undefined) continue;
    if (!ledgers.has(op.tenant))
      ledgers.set(op.tenant, { tenant: op.tenant, count: 0, spend: 0, caps });
  }
  for (const i of live) {
    const ledger = ledgers.get(tenantOfOp.get(i.operationId) ?? "");
    if (!ledger) continue;
    ledger.count += 1;
    ledger.spend += fleetSpendUsd([i], prices);
  }
  return ledgers;
}

function recentFailures(
  failures: readonly PoolFailure[],
  o: ResolvedFleetPolicy,
  now: number,
): string {
  const recent = failures.filter((f) => f.at + o.coolingMs > now);
  if (recent.length === 0) return "no launch request succeeded";
  return recent.map((f) => `${poolLabel(f.pool)} (${f.market}): ${f.code}`).join("; ");
}

/** Drops expired pool failures and what is remembered about operations that are gone. */
function pruneMemory(
  memory: FleetMemory,
  operations: readonly OperationState[],
  now: number,
  coolingMs: number,
): FleetMemory {
  const ids = new Set(operations.map((op) => op.id));
  return {
    poolFailures: memory.poolFailures.filter((f) => f.at + coolingMs > now),
    operations: Object.fromEntries(Object.entries(memory.operations).filter(([id]) => ids.has(id))),
    stragglerCopies: memory.stragglerCopies.filter((k) => ids.has(k.slice(0, k.indexOf("/")))),
  };
}
