/**
 * The fleet policy's vocabulary: the observed state it plans from (instances, operations,
 * prices), the memory it carries between plans, and the decisions it returns. Every section of
 * the policy and the fleet manager speak these types, so they sit in a leaf module that imports
 * nothing of the policy — which is what keeps the sections free of import cycles.
 */
import type {
  InstanceInfo,
  InstanceRole,
  InstanceState,
  Market,
  Pool,
} from "../../../shared/capacity.ts";
import type { SourceBudget } from "./source-cap.ts";

/** An instance the scheduler launched and has not seen terminated. */
export interface FleetInstance {
  id: string;
  /** The operation it was launched for (its tag). */
  operationId: string;
  role: InstanceRole;
  market: Market;
  instanceType: string;
  state: InstanceState;
  /** ms since the epoch. */
  launchedAt: number;
  /** Shards it works right now (from attempt records). Above 0 it is busy: scale-in leaves it. */
  runningShards: number;
  /** When it last finished a shard (or was seen running one); absent when it never did. */
  lastBusyAt?: number;
  /**
   * When its worker first reported up (its first receive from the work queue). Idle time counts
   * from it (or from `lastBusyAt`, later), never from launch: a worker slow to start on a loaded
   * machine is not idle. Absent with no `lastBusyAt`: never heard of; it goes at the boot deadline.
   */
  reportedAt?: number;
  /**
   * When EC2 warned that it interrupts this spot instance (about two minutes ahead). It keeps
   * working (its worker drains itself on the same notice from IMDS) and still counts against the
   * caps — it is live and billed — but no longer as capacity for sizing: its replacement is
   * planned at once instead of after it is gone.
   */
  interruptionWarnedAt?: number;
  /**
   * When EC2 recommended rebalancing it (elevated risk of interruption). Advisory: it still
   * counts as capacity; when the backlog no longer needs all instances, it is scaled in first.
   */
  rebalanceRecommendedAt?: number;
}

/** A shard some worker is working on. */
export interface RunningShard {
  shardId: string;
  /** When its FIRST attempt started (ms): a straggler is late as a whole, not per attempt. */
  startedAt: number;
  /** Attempts of it that ended in a spot reclaim (with or without notice). */
  interruptions: number;
}

/** One operation that is not finished (splitting or running), as the scheduler counts it. */
export interface OperationState {
  id: string;
  /**
   * Whose operation it is; the tenant's caps (FleetPolicyOptions.tenantCaps) hold across its
   * operations. @default no tenant: only the fleet's caps apply
   */
  tenant?: string;
  /**
   * The operation's own caps (its manifest's `caps`, changed by `PATCH /operations/:id`): its
   * live instances and their hourly spend stay within them. @default only fleet and tenant caps
   */
  caps?: { maxInstances?: number; maxHourlyUsd?: number };
  /** Shards queued that no worker has started. Counted by the scheduler, never from SQS's approximate counters. */
  pendingShards: number;
  running: readonly RunningShard[];
  /** Durations (ms, first start → commit) of its committed shards. */
  completedShardMs: readonly number[];
  /**
   * Its request budget (http-enrich `rateLimit`) and what its workers measured of the source:
   * its worker instances stay within what the budget keeps busy (./source-cap.ts).
   * @default no budget: the backlog alone sizes it
   */
  source?: SourceBudget;
}

/** USD per instance-hour by market and instance type. */
export interface PriceTable {
  spot: Readonly<Record<string, number>>;
  "on-demand": Readonly<Record<string, number>>;
}

export interface FleetState {
  /** Unfinished operations, oldest first: capacity is handed out in this order. */
  operations: readonly OperationState[];
  /** Instances the scheduler knows (launched by it; terminated ones may be left out). */
  instances: readonly FleetInstance[];
  /** The provider's view of instances tagged with our fleet (on start, then now and then): unknown live ones are orphans. */
  discovered?: readonly InstanceInfo[];
  prices: PriceTable;
  /** What the previous plan returned; `emptyFleetMemory()` on start. */
  memory: FleetMemory;
}

/** A capacity error a pool reported; the pool cools until `at + coolingMs`. */
export interface PoolFailure {
  market: Market;
  pool: Pool;
  at: number;
  code: string;
  message: string;
}

export interface OperationMemory {
  /** First plan that saw the operation with work and the fleet with no live instance. */
  unfulfilledSince?: number;
  /** The reason last published with `setWaiting`; absent while not waiting. */
  waiting?: string;
  /** Why the last plan could not launch for it, if it could not. */
  blocked?: string;
  /**
   * The source cap that held its launches back at the last plan (absent while it did not;
   * `measured` stays true once it was): a `sourceLimited` event goes out when it starts holding,
   * and once more when it is first measured.
   */
  sourceLimit?: { instances: number; measured: boolean };
  /** A config / permission error from one of its launches: it fails on the next plan. */
  fatal?: { kind: "config" | "permission"; code: string; message: string };
  /** `failOperation` was decided: nothing more is planned for it. */
  failed?: boolean;
}

/** What the policy remembers between plans. Plain data: the loop keeps it, never edits it. */
export interface FleetMemory {
  poolFailures: PoolFailure[];
  operations: Record<string, OperationMemory>;
  /** `operationId/shardId` of every shard copied to the straggler queue. */
  stragglerCopies: string[];
}

export function emptyFleetMemory(): FleetMemory {
  return { poolFailures: [], operations: {}, stragglerCopies: [] };
}

export interface LaunchDecision {
  type: "launch";
  operationId: string;
  role: InstanceRole;
  market: Market;
  count: number;
  /** The pools of this one request, in preference order; none is cooling for `market`. */
  pools: Pool[];
  reason: string;
}

export type TerminateCause =
  | "idle"
  | "operation-ended"
  | "orphan"
  | "stopped"
  | "rebalance"
  /** Its worker never reported up within the boot deadline. */
  | "unresponsive";

export interface TerminateDecision {
  type: "terminate";
  ids: string[];
  cause: TerminateCause;
  reason: string;
}

/** Send a copy of the shard's message to the straggler queue (once per shard). */
export interface CopyToStragglerDecision {
  type: "copyToStraggler";
  operationId: string;
  shardId: string;
  reason: string;
}

/** Show the operation as `waiting-for-capacity` with the reason (emitted when the reason changes). */
export interface SetWaitingDecision {
  type: "setWaiting";
  operationId: string;
  since: number;
  reason: string;
}

/** Capacity is back: the operation is no longer waiting. */
export interface ClearWaitingDecision {
  type: "clearWaiting";
  operationId: string;
}

/**
 * The operation's request budget holds its launches back (./source-cap.ts): a fleet event,
 * emitted when the cap starts holding (and once more when it is first measured), not every plan.
 */
export interface SourceLimitedDecision {
  type: "sourceLimited";
  operationId: string;
  /** Worker instances the budget keeps busy. */
  instances: number;
  reason: string;
}

export type FleetFailureCode = "CAPACITY_DEADLINE" | "CAPACITY_CONFIG" | "CAPACITY_PERMISSION";

/** Fail the operation with this message (emitted once). */
export interface FailOperationDecision {
  type: "failOperation";
  operationId: string;
  code: FleetFailureCode;
  message: string;
}

export type FleetDecision =
  | LaunchDecision
  | TerminateDecision
  | CopyToStragglerDecision
  | SetWaitingDecision
  | ClearWaitingDecision
  | FailOperationDecision
  | SourceLimitedDecision;

export interface FleetPlan {
  /** In the order to carry them out: terminations, straggler copies, launches, statuses. */
  decisions: FleetDecision[];
  memory: FleetMemory;
}

/** Pending or running: it costs money and (soon) takes work. */
export function isLive(state: InstanceState): boolean {
  return state === "pending" || state === "running";
}
