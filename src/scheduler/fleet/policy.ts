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
 */
import { z } from "zod";
import {
  CapacityConfigError,
  fleetTags,
  type InstanceInfo,
  type InstanceRole,
  type InstanceState,
  type LaunchedInstance,
  type LaunchRequest,
  type LaunchResult,
  type Market,
  type Pool,
  poolKey,
  poolLabel,
} from "../../shared/capacity.ts";
import { ConfigError } from "../../shared/errors.ts";

// ---------------------------------------------------------------------------------------------
// Options

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
  /** An instance without a shard for this long is terminated. @default 180_000 */
  idleTimeoutMs?: number;
  /**
   * A tagged instance the scheduler does not know is an orphan once it is this old (a younger one
   * may come from a launch whose result is still being recorded). @default 60_000
   */
  orphanGraceMs?: number;
}

/** Options with every default filled in (`maxHourlyUsd` stays absent when there is no cap). */
export type ResolvedFleetPolicy = Readonly<
  Required<Omit<FleetPolicyOptions, "maxHourlyUsd">> & { maxHourlyUsd?: number }
>;

const ms = z.number().int().min(0);
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
  orphanGraceMs: ms.default(60_000),
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

// ---------------------------------------------------------------------------------------------
// Observed state, memory and decisions

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
  /** When it last finished a shard; absent when it never did (idle since `launchedAt`). */
  lastBusyAt?: number;
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

/** The spot signal marks of an instance. */
export type SpotMarks = Pick<FleetInstance, "interruptionWarnedAt" | "rebalanceRecommendedAt">;

/** A spot signal as the policy needs it (src/shared/schemas/spot-events.ts has the event). */
export interface SpotSignalMark {
  kind: "interruption-warning" | "rebalance-recommendation";
  /** When EC2 emitted it (ms). */
  at: number;
}

/**
 * Folds a spot signal into an instance's marks. The first signal of each kind wins, so a
 * duplicate (SQS delivers at least once; IMDS and EventBridge may both tell) changes nothing:
 * the same object comes back, which is how the caller tells a duplicate from news.
 */
export function withSpotSignal<T extends SpotMarks>(instance: T, signal: SpotSignalMark): T {
  const field =
    signal.kind === "interruption-warning" ? "interruptionWarnedAt" : "rebalanceRecommendedAt";
  if (instance[field] !== undefined) return instance;
  return { ...instance, [field]: signal.at };
}

/** Whether the instance counts as capacity for sizing (not warned of an interruption). */
export function servesCapacity(instance: Pick<FleetInstance, "interruptionWarnedAt">): boolean {
  return instance.interruptionWarnedAt === undefined;
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
  /** Shards queued that no worker has started. Counted by the scheduler, never from SQS's approximate counters. */
  pendingShards: number;
  running: readonly RunningShard[];
  /** Durations (ms, first start → commit) of its committed shards. */
  completedShardMs: readonly number[];
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

export type TerminateCause = "idle" | "operation-ended" | "orphan" | "stopped" | "rebalance";

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
  | FailOperationDecision;

export interface FleetPlan {
  /** In the order to carry them out: terminations, straggler copies, launches, statuses. */
  decisions: FleetDecision[];
  memory: FleetMemory;
}

// ---------------------------------------------------------------------------------------------
// Prices and caps

/**
 * USD/h of one instance, or undefined when unknown. A spot price falls back to the on-demand
 * one: spot never bills above on-demand with the default maximum price.
 */
export function hourlyPrice(
  prices: PriceTable,
  market: Market,
  instanceType: string,
): number | undefined {
  const own = Object.hasOwn(prices[market], instanceType)
    ? prices[market][instanceType]
    : undefined;
  if (own !== undefined || market === "on-demand") return own;
  return hourlyPrice(prices, "on-demand", instanceType);
}

/**
 * What live instances cost per hour. An instance whose price is unknown counts at the highest
 * known price (conservative: the budget cap must hold).
 */
export function fleetSpendUsd(
  instances: readonly Pick<FleetInstance, "market" | "instanceType">[],
  prices: PriceTable,
): number {
  const highest = Math.max(0, ...Object.values(prices.spot), ...Object.values(prices["on-demand"]));
  return instances.reduce(
    (sum, i) => sum + (hourlyPrice(prices, i.market, i.instanceType) ?? highest),
    0,
  );
}

/** Shards an operation still has to get through: pending + running. */
export function backlogOf(op: Pick<OperationState, "pendingShards" | "running">): number {
  return op.pendingShards + op.running.length;
}

/** Instances a backlog calls for: ⌈backlog / shardsPerInstance⌉, at most `maxInstances`. */
export function desiredInstances(
  backlogShards: number,
  shardsPerInstance: number,
  maxInstances: number,
): number {
  if (backlogShards <= 0) return 0;
  return Math.min(maxInstances, Math.ceil(backlogShards / shardsPerInstance));
}

/** Tolerance of budget comparisons: float sums of prices are not exact. */
export const BUDGET_EPSILON = 1e-9;

/**
 * How many more instances fit under both caps: `live + n ≤ maxInstances` and
 * `spend + n × unitPrice ≤ maxHourlyUsd` (no budget cap when `maxHourlyUsd` is absent).
 */
export function launchRoom(input: {
  liveInstances: number;
  spendUsd: number;
  unitPriceUsd: number;
  maxInstances: number;
  maxHourlyUsd?: number;
}): number {
  let room = Math.max(0, input.maxInstances - input.liveInstances);
  if (input.maxHourlyUsd !== undefined && input.unitPriceUsd > 0) {
    const left = input.maxHourlyUsd - input.spendUsd;
    let byBudget = Math.max(0, Math.floor((left + BUDGET_EPSILON) / input.unitPriceUsd));
    // Float division can round one over; the cap must hold (to a billionth of a dollar).
    while (
      byBudget > 0 &&
      input.spendUsd + byBudget * input.unitPriceUsd > input.maxHourlyUsd + BUDGET_EPSILON
    ) {
      byBudget--;
    }
    room = Math.min(room, byBudget);
  }
  return room;
}

// ---------------------------------------------------------------------------------------------
// Spot batches

/** Smallest spot batch. */
export const BATCH_MIN = 5;
/** Largest spot batch. */
export const BATCH_MAX = 6;

/** Whether `n` is a sum of fives and sixes (5, 6, 10–12, 15–18 and every n ≥ 20). */
export function isBatchTotal(n: number): boolean {
  return n >= BATCH_MIN && n - BATCH_MIN * Math.ceil(n / BATCH_MAX) >= 0;
}

/** The smallest total ≥ n made of fives and sixes: 1–5 → 5, 7–9 → 10, 13–14 → 15, 19 → 20. */
export function roundUpToBatchTotal(n: number): number {
  let t = Math.max(n, BATCH_MIN);
  while (!isBatchTotal(t)) t++;
  return t;
}

/**
 * Splits a total into as few batches as possible, sixes first: 17 → 6+6+5, 12 → 6+6,
 * 11 → 6+5, 10 → 5+5. When the total is not a sum of fives and sixes (only when a cap forced
 * it), the largest such part is split that way and the rest is one smaller final batch:
 * 8 → 6+2, 13 → 6+6+1, 3 → 3.
 */
export function splitIntoBatches(total: number): number[] {
  let whole = total;
  while (whole > 0 && !isBatchTotal(whole)) whole--;
  const out: number[] = [];
  if (whole > 0) {
    const batches = Math.ceil(whole / BATCH_MAX);
    const sixes = whole - BATCH_MIN * batches;
    for (let i = 0; i < batches; i++) out.push(i < sixes ? BATCH_MAX : BATCH_MIN);
  }
  if (total > whole) out.push(total - whole);
  return out;
}

/**
 * The spot batches for `wanted` more instances when the caps leave room for `cap`.
 *
 * The rule: spot is requested in batches of five or six. `wanted` is rounded UP to the next
 * sum of fives and sixes (7, 8, 9 → 10 = 5+5; 13, 14 → 15 = 5+5+5; 19 → 20; 1–4 → 5) when the
 * caps allow it — the extra instances pick up work as soon as shards free up, and idle ones are
 * scaled in. When the caps do not allow the rounded total, we ask for `min(wanted, cap)`: batches
 * of five or six plus ONE smaller final batch (cap 8 for 7 wanted → 6+1; 3 allowed → 3).
 */
export function spotBatches(wanted: number, cap: number): number[] {
  if (wanted <= 0 || cap <= 0) return [];
  const rounded = roundUpToBatchTotal(wanted);
  return splitIntoBatches(rounded <= cap ? rounded : Math.min(wanted, cap));
}

// ---------------------------------------------------------------------------------------------
// Fallback

/** The latest failure of each pool still cooling for `market` at `now`, by pool key. */
export function coolingPools(
  failures: readonly PoolFailure[],
  market: Market,
  now: number,
  coolingMs: number,
): Map<string, PoolFailure> {
  const out = new Map<string, PoolFailure>();
  for (const f of failures) {
    if (f.market !== market || f.at + coolingMs <= now) continue;
    const key = poolKey(f.pool);
    const seen = out.get(key);
    if (!seen || seen.at < f.at) out.set(key, f);
  }
  return out;
}

/** The pools not cooling for `market`, in preference order. */
export function availablePools(
  pools: readonly Pool[],
  market: Market,
  failures: readonly PoolFailure[],
  now: number,
  coolingMs: number,
): Pool[] {
  const cooling = coolingPools(failures, market, now, coolingMs);
  return pools.filter((p) => !cooling.has(poolKey(p)));
}

/**
 * Where the next worker request goes: spot while any spot pool is not cooling; on-demand only
 * once every spot pool is cooling (exhausted, or every pool of the last requests reported a
 * capacity error); undefined when on-demand is exhausted too.
 */
export function chooseMarket(
  pools: readonly Pool[],
  failures: readonly PoolFailure[],
  now: number,
  coolingMs: number,
): { market: Market; pools: Pool[] } | undefined {
  for (const market of ["spot", "on-demand"] as const) {
    const free = availablePools(pools, market, failures, now, coolingMs);
    if (free.length > 0) return { market, pools: free };
  }
  return undefined;
}

/** Why no pool of `market` can be used: each cooling pool with its error and until when. */
export function describeCooling(
  pools: readonly Pool[],
  market: Market,
  failures: readonly PoolFailure[],
  now: number,
  coolingMs: number,
): string {
  if (pools.length === 0) return "no pools configured";
  const cooling = coolingPools(failures, market, now, coolingMs);
  return pools
    .map((p) => {
      const f = cooling.get(poolKey(p));
      return f
        ? `${poolLabel(p)}: ${f.code} (retry after ${iso(f.at + coolingMs)})`
        : `${poolLabel(p)}: available`;
    })
    .join("; ");
}

// ---------------------------------------------------------------------------------------------
// Stragglers

export function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * How long a shard may run before it is a straggler: max(factor × median completed time, minMs).
 * Undefined while no shard has completed: "longer than its peers" has no meaning yet.
 */
export function stragglerThresholdMs(
  completedShardMs: readonly number[],
  factor: number,
  minMs: number,
): number | undefined {
  const m = median(completedShardMs);
  return m === undefined ? undefined : Math.max(factor * m, minMs);
}

export interface Straggler {
  operationId: string;
  shardId: string;
  cause: "slow" | "interrupted";
  runningMs: number;
  thresholdMs?: number;
}

/** The key a straggler copy is remembered under. */
export function stragglerKey(operationId: string, shardId: string): string {
  return `${operationId}/${shardId}`;
}

/**
 * The operation's stragglers not yet copied: only once no shard is pending and some still run;
 * then a shard is one when it has run past the threshold or been interrupted
 * `stragglerInterruptions` times.
 */
export function findStragglers(
  op: OperationState,
  now: number,
  options: Pick<
    ResolvedFleetPolicy,
    "stragglerFactor" | "stragglerMinMs" | "stragglerInterruptions"
  >,
  copied: ReadonlySet<string>,
): Straggler[] {
  if (op.pendingShards > 0 || op.running.length === 0) return [];
  const thresholdMs = stragglerThresholdMs(
    op.completedShardMs,
    options.stragglerFactor,
    options.stragglerMinMs,
  );
  const out: Straggler[] = [];
  for (const s of op.running) {
    if (copied.has(stragglerKey(op.id, s.shardId))) continue;
    const runningMs = now - s.startedAt;
    const base = { operationId: op.id, shardId: s.shardId, runningMs };
    if (s.interruptions >= options.stragglerInterruptions) {
      out.push({ ...base, cause: "interrupted" });
    } else if (thresholdMs !== undefined && runningMs > thresholdMs) {
      out.push({ ...base, cause: "slow", thresholdMs });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Scale-in

/** Pending or running: it costs money and (soon) takes work. */
export function isLive(state: InstanceState): boolean {
  return state === "pending" || state === "running";
}

/** When the instance last had nothing to do. */
export function idleSince(instance: Pick<FleetInstance, "launchedAt" | "lastBusyAt">): number {
  return Math.max(instance.launchedAt, instance.lastBusyAt ?? instance.launchedAt);
}

/**
 * Terminations among known instances; a busy instance (`runningShards > 0`) is never one.
 * - `operation-ended`: live, idle, and its operation is no longer active (nothing else asked for it);
 * - `idle`: live and idle for at least `idleTimeoutMs`;
 * - `stopped`: a stopped instance does no work and would resume unasked.
 */
export function planScaleIn(
  instances: readonly FleetInstance[],
  activeOperationIds: ReadonlySet<string>,
  now: number,
  options: Pick<ResolvedFleetPolicy, "idleTimeoutMs">,
): TerminateDecision[] {
  const by: Record<Exclude<TerminateCause, "orphan" | "rebalance">, string[]> = {
    "operation-ended": [],
    idle: [],
    stopped: [],
  };
  for (const i of instances) {
    if (i.runningShards > 0) continue;
    if (i.state === "stopped") by.stopped.push(i.id);
    else if (!isLive(i.state)) continue;
    else if (!activeOperationIds.has(i.operationId)) by["operation-ended"].push(i.id);
    else if (now - idleSince(i) >= options.idleTimeoutMs) by.idle.push(i.id);
  }
  const reasons = {
    "operation-ended": "their operation ended and nothing else needs them",
    idle: `idle for ${seconds(options.idleTimeoutMs)} or more`,
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

// ---------------------------------------------------------------------------------------------
// The plan

interface Ledger {
  count: number;
  spend: number;
  stragglerInstances: number;
}

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
    const { launches, blocked } = planLaunches(
      op,
      live,
      ledger,
      memory,
      copies,
      state.prices,
      now,
      o,
    );
    decisions.push(...launches);
    m.blocked = blocked;
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

/** Straggler and worker launches for one operation; `blocked` says why a needed one was not planned. */
function planLaunches(
  op: OperationState,
  live: readonly FleetInstance[],
  ledger: Ledger,
  memory: FleetMemory,
  copies: ReadonlySet<string>,
  prices: PriceTable,
  now: number,
  o: ResolvedFleetPolicy,
): { launches: LaunchDecision[]; blocked?: string } {
  const launches: LaunchDecision[] = [];
  // Capacity for sizing: an instance warned of an interruption is leaving; its replacement is
  // planned now (it still counts against the caps in `ledger`: it is live and billed). A
  // rebalance recommendation alone launches nothing: it is advisory, often not followed by an
  // interruption at all, and replacing on it would double the fleet for nothing.
  const mine = live.filter((i) => i.operationId === op.id && servesCapacity(i));
  const warned = live.filter((i) => i.operationId === op.id && !servesCapacity(i)).length;

  // One on-demand instance per straggler still running, within the straggler cap.
  const stragglers = op.running.filter((s) => copies.has(stragglerKey(op.id, s.shardId))).length;
  const stragglerWant = Math.min(
    stragglers - mine.filter((i) => i.role === "straggler").length,
    o.maxStragglerInstances - ledger.stragglerInstances,
  );
  if (stragglerWant > 0) {
    const pools = priced(
      availablePools(o.pools, "on-demand", memory.poolFailures, now, o.coolingMs),
      "on-demand",
      prices,
      o,
    );
    const count =
      pools.length === 0 ? 0 : Math.min(stragglerWant, room(ledger, pools, "on-demand", prices, o));
    if (count > 0) {
      launches.push(
        launch(
          op.id,
          "straggler",
          "on-demand",
          count,
          pools,
          `${count} on-demand for ${stragglers} straggler(s)`,
        ),
      );
      ledger.count += count;
      ledger.spend += count * worstPrice(pools, "on-demand", prices);
      ledger.stragglerInstances += count;
    }
  }

  const desired = desiredInstances(backlogOf(op), o.shardsPerInstance, o.maxInstances);
  if (desired === 0 && backlogOf(op) > 0) {
    return { launches, blocked: `max instances (${o.maxInstances}) reached` };
  }
  const need = desired - mine.filter((i) => i.role === "worker").length;
  if (need <= 0) return { launches };
  const sizing =
    `backlog ${backlogOf(op)} shards → ${desired} instance(s), ${desired - need} live` +
    (warned > 0 ? ` (+${warned} warned of an interruption)` : "");
  const choice = chooseMarket(o.pools, memory.poolFailures, now, o.coolingMs);
  if (!choice) {
    const cooling = (market: Market) =>
      describeCooling(o.pools, market, memory.poolFailures, now, o.coolingMs);
    return {
      launches,
      blocked: `no spot capacity (${cooling("spot")}); no on-demand capacity (${cooling("on-demand")})`,
    };
  }
  const pools = priced(choice.pools, choice.market, prices, o);
  if (pools.length === 0) {
    return {
      launches,
      blocked: `no ${choice.market} price known for ${choice.pools.map((p) => p.instanceType).join(", ")} (needed for the hourly budget cap)`,
    };
  }
  const cap = room(ledger, pools, choice.market, prices, o);
  const counts =
    choice.market === "spot" ? spotBatches(need, cap) : cap > 0 ? [Math.min(need, cap)] : [];
  if (counts.length === 0) {
    return { launches, blocked: capReason(ledger, pools, choice.market, prices, o) };
  }
  const fallback =
    choice.market === "on-demand"
      ? `every spot pool is cooling (${describeCooling(o.pools, "spot", memory.poolFailures, now, o.coolingMs)}); `
      : "";
  counts.forEach((count, n) => {
    const batch = counts.length > 1 ? ` batch ${n + 1}/${counts.length}` : "";
    launches.push(
      launch(
        op.id,
        "worker",
        choice.market,
        count,
        pools,
        `${fallback}${choice.market}${batch}: ${sizing}`,
      ),
    );
    ledger.count += count;
    ledger.spend += count * worstPrice(pools, choice.market, prices);
  });
  return { launches };
}

function launch(
  operationId: string,
  role: InstanceRole,
  market: Market,
  count: number,
  pools: Pool[],
  reason: string,
): LaunchDecision {
  return { type: "launch", operationId, role, market, count, pools, reason };
}

/** Pools usable under the budget cap: with a cap, a pool needs a known price. */
function priced(pools: Pool[], market: Market, prices: PriceTable, o: ResolvedFleetPolicy): Pool[] {
  if (o.maxHourlyUsd === undefined) return pools;
  return pools.filter((p) => hourlyPrice(prices, market, p.instanceType) !== undefined);
}

/** A request may land in any of its pools, so it is budgeted at the most expensive one. */
function worstPrice(pools: readonly Pool[], market: Market, prices: PriceTable): number {
  return Math.max(0, ...pools.map((p) => hourlyPrice(prices, market, p.instanceType) ?? 0));
}

function room(
  ledger: Ledger,
  pools: readonly Pool[],
  market: Market,
  prices: PriceTable,
  o: ResolvedFleetPolicy,
): number {
  return launchRoom({
    liveInstances: ledger.count,
    spendUsd: ledger.spend,
    unitPriceUsd: worstPrice(pools, market, prices),
    maxInstances: o.maxInstances,
    ...(o.maxHourlyUsd === undefined ? {} : { maxHourlyUsd: o.maxHourlyUsd }),
  });
}

function capReason(
  ledger: Ledger,
  pools: readonly Pool[],
  market: Market,
  prices: PriceTable,
  o: ResolvedFleetPolicy,
): string {
  if (ledger.count >= o.maxInstances) return `max instances (${o.maxInstances}) reached`;
  return (
    `hourly budget ${usd(o.maxHourlyUsd ?? 0)}/h reached (${usd(ledger.spend)}/h in use; ` +
    `a ${market} instance costs up to ${usd(worstPrice(pools, market, prices))}/h)`
  );
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

// ---------------------------------------------------------------------------------------------
// Carrying decisions out

/** The port request for a launch decision. Pass a fresh token (`newClientToken()`); reuse the request on retry. */
export function toLaunchRequest(
  decision: LaunchDecision,
  input: { fleet: string; clientToken: string },
): LaunchRequest {
  return {
    market: decision.market,
    count: decision.count,
    pools: decision.pools,
    tags: fleetTags({
      fleet: input.fleet,
      operationId: decision.operationId,
      role: decision.role,
      market: decision.market,
    }),
    clientToken: input.clientToken,
  };
}

/** The instances a launch started, as the scheduler tracks them — including those launched despite errors. */
export function fleetInstancesFrom(
  decision: LaunchDecision,
  launched: readonly LaunchedInstance[],
): FleetInstance[] {
  return launched.map((i) => ({
    id: i.instanceId,
    operationId: decision.operationId,
    role: decision.role,
    market: i.market,
    instanceType: i.instanceType,
    state: "pending",
    launchedAt: i.launchedAt,
    runningShards: 0,
  }));
}

/**
 * Folds a launch result into memory: capacity (and unclassified) errors cool their pool — or
 * every pool of the request when the error names none; a config or permission error marks the
 * operation to fail loudly on the next plan.
 */
export function recordLaunchOutcome(
  memory: FleetMemory,
  decision: LaunchDecision,
  result: LaunchResult,
  now: number,
): FleetMemory {
  const poolFailures = [...memory.poolFailures];
  let fatal = memory.operations[decision.operationId]?.fatal;
  for (const e of result.errors) {
    if (e.kind === "config" || e.kind === "permission") {
      const where = e.pool ? ` in ${poolLabel(e.pool)}` : "";
      fatal ??= {
        kind: e.kind,
        code: e.code,
        message: fatalMessage(e.kind, `${e.code}${where}: ${e.message}`),
      };
      continue;
    }
    const market = e.market ?? decision.market;
    for (const pool of e.pool ? [e.pool] : decision.pools) {
      poolFailures.push({ market, pool, at: now, code: e.code, message: e.message });
    }
  }
  return withOperation({ ...memory, poolFailures }, decision.operationId, fatal);
}

/**
 * Folds a thrown launch into memory: a CapacityConfigError marks the operation to fail loudly.
 * Anything else changes nothing — the loop retries a RetryableError with the same request, and
 * the capacity deadline bounds every other failure.
 */
export function recordLaunchError(
  memory: FleetMemory,
  decision: LaunchDecision,
  err: unknown,
): FleetMemory {
  if (!(err instanceof CapacityConfigError)) return memory;
  if (memory.operations[decision.operationId]?.fatal) return memory;
  return withOperation(memory, decision.operationId, {
    kind: err.kind,
    code: err.providerCode,
    message: fatalMessage(err.kind, err.message),
  });
}

function withOperation(
  memory: FleetMemory,
  operationId: string,
  fatal: OperationMemory["fatal"],
): FleetMemory {
  if (!fatal) return memory;
  return {
    ...memory,
    operations: {
      ...memory.operations,
      [operationId]: { ...memory.operations[operationId], fatal },
    },
  };
}

function fatalMessage(kind: "config" | "permission", detail: string): string {
  const fix =
    kind === "permission"
      ? "give the scheduler's role the EC2 permissions it needs (CreateFleet, RunInstances, CreateTags, iam:PassRole)"
      : "fix the fleet's launch template, subnets or instance types";
  return `capacity request refused (${kind} error, retrying cannot help): ${detail} — ${fix}`;
}

function usd(value: number): string {
  return `$${Number(value.toFixed(4))}`;
}

function seconds(msValue: number): string {
  return `${Math.round(msValue / 1000)} s`;
}

function iso(msValue: number): string {
  return new Date(msValue).toISOString();
}
