/**
 * The fleet manager: the thin loop around the fleet policy (policy.ts; its module comment is the
 * loop contract). Each pass:
 *
 *   1. observes — the unfinished operations (manifests) and their shards (S3: pending, running
 *      since when, interruptions, committed durations, busy instances), and the instances of this
 *      fleet as the capacity provider describes them (states, reclaims, orphans);
 *   2. plans — `planFleet(state, now, policy)`;
 *   3. carries the decisions out in order — terminate, copy stragglers to the straggler queue,
 *      launch (a fresh client token per request, the same one on its retries; a launch that
 *      reports errors makes the remaining launches wait for a re-plan), publish
 *      `waiting-for-capacity` or fail the operation;
 *   4. records — every instance and fleet event of an operation in its fleet record in S3
 *      (`keys.fleet(op)`), which the API shows.
 *
 * Between passes, `applySpotSignal` takes EC2 spot signals from EventBridge (./spot-events.ts
 * consumes the queue): it marks the instance, records a fleet event, and the next plan sees the
 * mark (an instance warned of an interruption is replaced at once; see policy.ts).
 *
 * S3 and the provider are the truth; what the manager keeps in memory (instances it launched,
 * the policy's memory) is rebuilt on start from the fleet records of unfinished operations, so a
 * restarted scheduler adopts its running instances, and an instance of this fleet that no
 * unfinished operation claims is an orphan (terminated once older than the policy's grace).
 *
 * Stopping the manager leaves instances running: they keep working the queue, and the next start
 * adopts them.
 *
 * Lifecycle: idle → running (start) → draining (stop: abort the pass, flush records) → stopped.
 */

import { mapLimit, runEvery } from "../../shared/async.ts";
import {
  CapacityConfigError,
  type CapacityError,
  type CapacityProvider,
  FLEET_TAGS,
  type InstanceInfo,
  type InstanceState,
  type LaunchRequest,
  type LaunchResult,
  newClientToken,
  poolLabel,
} from "../../shared/capacity.ts";
import type { Clock } from "../../shared/clock.ts";
import { describeError, RetryableError } from "../../shared/errors.ts";
import { keys } from "../../shared/keys.ts";
import type { Logger } from "../../shared/logger.ts";
import type { ObjectStore } from "../../shared/object-store.ts";
import {
  type FleetEvent,
  type FleetEventKind,
  type FleetInstanceRecord,
  type FleetRecord,
  fleetRecordSchema,
  MAX_FLEET_EVENTS,
} from "../../shared/schemas/fleet.ts";
import {
  type Manifest,
  type OperationStatus,
  TERMINAL_STATUSES,
} from "../../shared/schemas/operation.ts";
import type { SpotSignal } from "../../shared/schemas/spot-events.ts";
import type { ShardQueue } from "../../shared/shard-queue.ts";
import { listOperationIds, loadManifest, saveManifest } from "../operations.ts";
import { type InstanceActivity, ShardActivityReader } from "./observe.ts";
import {
  emptyFleetMemory,
  type FleetDecision,
  type FleetInstance,
  type FleetMemory,
  type FleetPolicyOptions,
  type FleetState,
  fleetInstancesFrom,
  isLive,
  type LaunchDecision,
  type OperationState,
  type PriceTable,
  planFleet,
  type ResolvedFleetPolicy,
  recordLaunchError,
  recordLaunchOutcome,
  resolveFleetPolicy,
  type TerminateDecision,
  toLaunchRequest,
  withSpotSignal,
} from "./policy.ts";

export interface FleetManagerDeps {
  capacity: CapacityProvider;
  queue: ShardQueue;
  store: ObjectStore;
  logger: Logger;
  clock: Clock;
}

export interface FleetManagerOptions {
  /** This fleet's name (the `shardfleet:fleet` tag): the orphan sweep only touches its own. */
  fleet: string;
  /** The policy's options (pools, caps, timeouts); checked at construction. */
  policy: FleetPolicyOptions;
  /** USD per instance-hour, for the budget cap. */
  prices: PriceTable;
  /**
   * Where straggler copies go (on-demand workers poll it first).
   * @default undefined — stragglers are reported but not copied
   */
  stragglerQueueUrl?: string;
  /** Pause between passes. @default 5000 */
  intervalMs?: number;
  /**
   * How long a new instance takes to boot and start its worker. Until it has been seen working,
   * its idle time counts from `launchedAt + bootGraceMs`, not from launch: an instance that
   * cannot take work yet is not idle, and scaling it in would only launch another.
   * @default 120000 (EC2: boot + worker start)
   */
  bootGraceMs?: number;
  /** Retries of a launch call that threw a RetryableError (same request, same token). @default 2 */
  launchRetries?: number;
  /** First retry delay, doubled each retry. @default 1000 */
  launchRetryDelayMs?: number;
}

export type FleetManagerState = "idle" | "running" | "draining" | "stopped";

/**
 * What became of a spot signal handed to `applySpotSignal`:
 * - `applied`: news for an instance of this fleet — marked and recorded;
 * - `duplicate`: the instance already carries that mark (a redelivery, or a second signal);
 * - `ended`: the instance is known to be gone already — nothing to do;
 * - `unknown-instance`: not an instance of this fleet (the rule sees the whole region);
 * - `not-ready`: the manager has not adopted its recorded instances yet (first pass pending):
 *   it cannot tell yet, try again shortly.
 */
export type SpotSignalOutcome =
  | "applied"
  | "duplicate"
  | "ended"
  | "unknown-instance"
  | "not-ready";

/** Statuses of operations that still need (or will soon need) capacity. */
const ACTIVE: ReadonlySet<OperationStatus> = new Set([
  "queued",
  "splitting",
  "running",
  "waiting-for-capacity",
]);

/** Re-plans allowed in one pass after launches that reported errors (each cools pools, so this converges fast). */
const MAX_PLANS_PER_PASS = 4;

/** An instance this manager launched (or adopted from a fleet record) and has not seen end. */
interface Tracked {
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
  /** Set when this manager asked for the termination (so its end is not a loss). */
  terminated?: string;
  endReason?: string;
  /** Spot signals from EventBridge (ms): see FleetInstance. */
  interruptionWarnedAt?: number;
  rebalanceRecommendedAt?: number;
}

interface PendingRecord {
  events: FleetEvent[];
  instances: Set<string>;
}

export class FleetManager {
  readonly #capacity: CapacityProvider;
  readonly #queue: ShardQueue;
  readonly #store: ObjectStore;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #fleet: string;
  readonly #policyOptions: FleetPolicyOptions;
  readonly #policy: ResolvedFleetPolicy;
  readonly #prices: PriceTable;
  readonly #stragglerQueueUrl: string | undefined;
  readonly #intervalMs: number;
  readonly #launchRetries: number;
  readonly #bootGraceMs: number;
  readonly #launchRetryDelayMs: number;
  readonly #shards: ShardActivityReader;

  readonly #instances = new Map<string, Tracked>();
  /** Ended instances, kept until their end is recorded. */
  readonly #ended = new Map<string, Tracked>();
  /** Ids of every instance seen end: their `running` attempts are dead. */
  readonly #gone = new Set<string>();
  /** The provider's view at the start of the pass. */
  #discovered: readonly InstanceInfo[] = [];
  #memory: FleetMemory = emptyFleetMemory();
  /** Events and instance changes not yet written, by operation. */
  readonly #pending = new Map<string, PendingRecord>();
  /** Fleet records as last written, by operation (unfinished operations only). */
  readonly #records = new Map<string, FleetRecord>();
  /** Operations known to be finished: never read again. */
  readonly #terminal = new Set<string>();
  /** Operations whose worker capacity is on-demand because spot is cooling. */
  readonly #onDemandFallback = new Set<string>();
  /** Operations watched on the previous pass (to forget caches of those that left). */
  #watched = new Set<string>();
  #adopted = false;
  /** The fleet record writes in flight: one at a time, so none overwrites another's events. */
  #flushing: Promise<void> = Promise.resolve();
  #warnedNoStragglerQueue = false;

  #state: FleetManagerState = "idle";
  #abort = new AbortController();
  #loop: Promise<void> | undefined;

  constructor(deps: FleetManagerDeps, options: FleetManagerOptions) {
    this.#capacity = deps.capacity;
    this.#queue = deps.queue;
    this.#store = deps.store;
    this.#log = deps.logger.child({ module: "fleet-manager", fleet: options.fleet });
    this.#clock = deps.clock;
    this.#fleet = options.fleet;
    this.#policyOptions = options.policy;
    this.#policy = resolveFleetPolicy(options.policy);
    this.#prices = options.prices;
    this.#stragglerQueueUrl = options.stragglerQueueUrl;
    this.#intervalMs = options.intervalMs ?? 5000;
    this.#launchRetries = options.launchRetries ?? 2;
    this.#bootGraceMs = options.bootGraceMs ?? 120_000;
    this.#launchRetryDelayMs = options.launchRetryDelayMs ?? 1000;
    this.#shards = new ShardActivityReader({ store: deps.store });
  }

  get state(): FleetManagerState {
    return this.#state;
  }

  /** The policy memory after the last plan (tests, diagnostics). */
  get memory(): FleetMemory {
    return this.#memory;
  }

  /** Starts the loop; its first pass adopts recorded instances and sweeps orphans. */
  start(): void {
    if (this.#state !== "idle") throw new Error(`fleet manager cannot start: it is ${this.#state}`);
    this.#state = "running";
    this.#loop = this.#run();
    this.#log.info(
      {
        intervalMs: this.#intervalMs,
        pools: this.#policy.pools.map(poolLabel),
        maxInstances: this.#policy.maxInstances,
        maxHourlyUsd: this.#policy.maxHourlyUsd,
      },
      "fleet manager started",
    );
  }

  /** Stops the loop and writes pending records. Instances keep running (the next start adopts them). */
  async stop(): Promise<void> {
    if (this.#state !== "running") return;
    this.#state = "draining";
    this.#abort.abort(new Error("fleet manager stopping"));
    await this.#loop;
    await this.#flush().catch((err: unknown) => {
      this.#log.error({ err }, "could not write fleet records on stop");
    });
    this.#state = "stopped";
    this.#log.info("fleet manager stopped");
  }

  #run(): Promise<void> {
    return runEvery((signal) => this.tick(signal), {
      intervalMs: this.#intervalMs,
      signal: this.#abort.signal,
      sleep: (ms, signal) => this.#clock.sleep(ms, signal),
      onError: (err) => this.#log.error({ err }, "fleet pass failed; retrying next pass"),
    });
  }

  /** One pass: observe, plan, carry out, record (public so tests can drive passes). */
  async tick(signal: AbortSignal = this.#abort.signal): Promise<void> {
    const { manifests, existing } = await this.#observeOperations(signal);
    if (!this.#adopted) {
      await this.#adopt(manifests, signal);
      this.#adopted = true;
    }
    for (const m of manifests) this.#seedWaiting(m);

    const discovered = await this.#capacity.describe(
      { tags: { [FLEET_TAGS.fleet]: this.#fleet } },
      signal,
    );
    this.#discovered = discovered;
    this.#reconcileInstances(discovered);

    const operations: OperationState[] = [];
    const activity = new Map<string, InstanceActivity>();
    const observed = await mapLimit(manifests, 4, (m) =>
      this.#shards.read(m, (id) => this.#isGone(id), signal),
    );
    for (const o of observed) {
      operations.push(o.state);
      for (const [id, act] of o.activity) {
        const sum = activity.get(id) ?? { running: 0 };
        sum.running += act.running;
        if (act.lastEndedAt !== undefined)
          sum.lastEndedAt = Math.max(sum.lastEndedAt ?? 0, act.lastEndedAt);
        activity.set(id, sum);
      }
    }
    this.#noteActivity(activity);
    this.#forgetUnwatched(manifests);

    const byId = new Map(manifests.map((m) => [m.id, m]));
    let withDiscovered = true;
    for (let round = 0; round < MAX_PLANS_PER_PASS; round++) {
      const state: FleetState = {
        operations,
        instances: this.#fleetInstances(activity),
        // Only the first plan of a pass: later ones would see orphans already terminated as live.
        ...(withDiscovered ? { discovered } : {}),
        prices: this.#prices,
        memory: this.#memory,
      };
      withDiscovered = false;
      const plan = planFleet(state, this.#clock.now(), this.#policyOptions);
      this.#memory = plan.memory;
      const replan = await this.#carryOut(plan.decisions, byId, existing, signal);
      if (!replan) break;
    }
    await this.#reconcileStatuses(byId, signal);
    await this.#flush(signal);
  }

  // -------------------------------------------------------------------------------------------
  // Spot signals (EventBridge)

  /**
   * Applies a spot signal: marks the instance (the next plan replaces an instance warned of an
   * interruption at once, and scales in one with a rebalance recommendation first), records a
   * fleet event and writes the fleet record before resolving, so the caller may then delete the
   * message. Idempotent: the same signal again is a `duplicate` and changes nothing.
   */
  async applySpotSignal(signal: SpotSignal, abort?: AbortSignal): Promise<SpotSignalOutcome> {
    if (!this.#adopted) return "not-ready";
    const t = this.#instances.get(signal.instanceId);
    if (!t) return this.#gone.has(signal.instanceId) ? "ended" : "unknown-instance";
    if (!isLive(t.state)) return "ended";
    const marked = withSpotSignal(t, signal);
    if (marked === t) return "duplicate";
    t.interruptionWarnedAt = marked.interruptionWarnedAt;
    t.rebalanceRecommendedAt = marked.rebalanceRecommendedAt;
    this.#touchInstance(t);
    const emitted = new Date(signal.at).toISOString();
    const details = { instanceId: t.id, eventId: signal.eventId, market: t.market };
    if (signal.kind === "interruption-warning") {
      // Hibernation starts at once; stop and terminate come about two minutes after the warning.
      const what =
        signal.action === "hibernate"
          ? "hibernate it now"
          : `${signal.action ?? "interrupt"} it in about two minutes`;
      this.#event(
        t.operationId,
        "spot-interruption-warning",
        `spot interruption warning for ${t.id} (EventBridge): EC2 will ${what} (emitted ${emitted}); it no longer counts as capacity, so its replacement is planned now`,
        details,
      );
    } else {
      this.#event(
        t.operationId,
        "rebalance-recommendation",
        `rebalance recommendation for ${t.id} (EventBridge): elevated risk of interruption (emitted ${emitted}); it keeps working, is scaled in first when not needed, and is not replaced`,
        details,
      );
    }
    await this.#flush(abort);
    return "applied";
  }

  // -------------------------------------------------------------------------------------------
  // Observing

  /** Manifests of unfinished operations, oldest first, and every operation id that exists. */
  async #observeOperations(
    signal: AbortSignal,
  ): Promise<{ manifests: Manifest[]; existing: Set<string> }> {
    const ids = await listOperationIds(this.#store, signal);
    const existing = new Set(ids);
    const open = ids.filter((id) => !this.#terminal.has(id)).reverse();
    const loaded = await mapLimit(open, 8, async (id) => {
      try {
        return await loadManifest(this.#store, id, signal);
      } catch (err) {
        if (signal.aborted) throw err;
        this.#log.warn({ err, operationId: id }, "manifest unreadable; not sized this pass");
        return undefined;
      }
    });
    const manifests: Manifest[] = [];
    for (const m of loaded) {
      if (!m) continue;
      if (TERMINAL_STATUSES.has(m.status)) this.#terminal.add(m.id);
      else if (ACTIVE.has(m.status)) manifests.push(m);
    }
    return { manifests, existing };
  }

  /**
   * First pass only: take over the instances the fleet records of unfinished operations list
   * as not ended, so a restarted scheduler neither loses nor "orphans" them.
   */
  async #adopt(manifests: readonly Manifest[], signal: AbortSignal): Promise<void> {
    await mapLimit(manifests, 8, async (m) => {
      const record = await this.#loadRecord(m.id, signal);
      if (!record) return;
      for (const i of record.instances) {
        if (i.state === "terminated" || this.#instances.has(i.id)) continue;
        this.#instances.set(i.id, {
          id: i.id,
          operationId: m.id,
          role: i.role,
          market: i.market,
          instanceType: i.type,
          ...(i.availabilityZone ? { availabilityZone: i.availabilityZone } : {}),
          state: i.state,
          launchedAt: Date.parse(i.launchedAt),
          since: Date.parse(i.since),
          // Its end was already asked for (or seen): when it shows terminated, that is no loss.
          ...(i.endReason ? { terminated: "recorded", endReason: i.endReason } : {}),
          ...(i.interruptionWarnedAt
            ? { interruptionWarnedAt: Date.parse(i.interruptionWarnedAt) }
            : {}),
          ...(i.rebalanceRecommendedAt
            ? { rebalanceRecommendedAt: Date.parse(i.rebalanceRecommendedAt) }
            : {}),
        });
      }
    });
    if (this.#instances.size > 0) {
      this.#log.info({ instances: this.#instances.size }, "adopted instances from fleet records");
    }
  }

  /** After a restart the policy's memory is empty: carry a recorded wait (and its deadline) over. */
  #seedWaiting(m: Manifest): void {
    if (m.status !== "waiting-for-capacity" || !m.waiting || this.#memory.operations[m.id]) return;
    this.#memory = {
      ...this.#memory,
      operations: {
        ...this.#memory.operations,
        [m.id]: { unfulfilledSince: Date.parse(m.waiting.since), waiting: m.waiting.reason },
      },
    };
  }

  /** Folds the provider's view into the tracked instances: state changes, losses, disappearances. */
  #reconcileInstances(discovered: readonly InstanceInfo[]): void {
    const now = this.#clock.now();
    const seen = new Map(discovered.map((i) => [i.instanceId, i]));
    for (const t of [...this.#instances.values()]) {
      const d = seen.get(t.id);
      // Missing: EC2 lists new instances late and forgets terminated ones after about an hour.
      const state: InstanceState | undefined = d
        ? d.state
        : now - t.launchedAt > this.#policy.orphanGraceMs
          ? "terminated"
          : undefined;
      if (!state || state === t.state) continue;
      const ended = state === "terminated" || state === "shutting-down";
      if (ended && !t.terminated && !t.endReason) {
        t.endReason = d
          ? "ended without being asked (spot reclaim or failure)"
          : "no longer listed by the provider";
        this.#event(
          t.operationId,
          "instance-lost",
          `${t.id} (${t.market}, ${t.role}) ${t.endReason}`,
          { instanceId: t.id, market: t.market },
        );
      }
      this.#setState(t, state, now);
    }
  }

  #setState(t: Tracked, state: InstanceState, now: number): void {
    t.state = state;
    t.since = now;
    this.#touchInstance(t);
    if (state === "terminated") {
      this.#instances.delete(t.id);
      this.#ended.set(t.id, t);
      this.#gone.add(t.id);
    }
  }

  #isGone(instanceId: string): boolean {
    const t = this.#instances.get(instanceId);
    if (t) return !isLive(t.state);
    return this.#gone.has(instanceId);
  }

  #noteActivity(activity: ReadonlyMap<string, InstanceActivity>): void {
    const now = this.#clock.now();
    for (const [id, act] of activity) {
      const t = this.#instances.get(id);
      if (!t) continue;
      // Busy now: when it goes idle, it has been idle since about now.
      const busy = act.running > 0 ? now : act.lastEndedAt;
      if (busy !== undefined && busy > (t.lastBusyAt ?? 0)) t.lastBusyAt = busy;
      if (t.state === "pending" && act.running > 0) this.#setState(t, "running", now);
    }
  }

  #forgetUnwatched(manifests: readonly Manifest[]): void {
    const now = new Set(manifests.map((m) => m.id));
    for (const id of this.#watched) {
      if (!now.has(id)) {
        this.#shards.forget(id);
        this.#records.delete(id);
        this.#onDemandFallback.delete(id);
      }
    }
    this.#watched = now;
  }

  #fleetInstances(activity: ReadonlyMap<string, InstanceActivity>): FleetInstance[] {
    return [...this.#instances.values()]
      .filter((t) => !t.terminated)
      .map((t) => ({
        id: t.id,
        operationId: t.operationId,
        role: t.role,
        market: t.market,
        instanceType: t.instanceType,
        state: t.state,
        launchedAt: t.launchedAt,
        runningShards: activity.get(t.id)?.running ?? 0,
        lastBusyAt: t.lastBusyAt ?? t.launchedAt + this.#bootGraceMs,
        ...(t.interruptionWarnedAt !== undefined
          ? { interruptionWarnedAt: t.interruptionWarnedAt }
          : {}),
        ...(t.rebalanceRecommendedAt !== undefined
          ? { rebalanceRecommendedAt: t.rebalanceRecommendedAt }
          : {}),
      }));
  }

  // -------------------------------------------------------------------------------------------
  // Carrying decisions out

  /** Carries a plan out; true when a launch reported errors and the rest needs a re-plan. */
  async #carryOut(
    decisions: readonly FleetDecision[],
    manifests: Map<string, Manifest>,
    existing: ReadonlySet<string>,
    signal: AbortSignal,
  ): Promise<boolean> {
    let replan = false;
    for (const d of decisions) {
      try {
        switch (d.type) {
          case "terminate":
            await this.#terminate(d, existing, signal);
            break;
          case "copyToStraggler":
            await this.#copyToStraggler(d.operationId, d.shardId, d.reason, manifests, signal);
            break;
          case "launch":
            // Planned assuming earlier launches succeed: once one reported errors, re-plan.
            if (!replan) replan = await this.#launch(d, signal);
            break;
          case "setWaiting":
            await this.#setWaiting(d.operationId, d.since, d.reason, manifests, signal);
            break;
          case "clearWaiting":
            await this.#clearWaiting(d.operationId, manifests, signal);
            break;
          case "failOperation":
            await this.#failOperation(d.operationId, d.code, d.message, manifests, signal);
            break;
        }
      } catch (err) {
        if (signal.aborted) throw err;
        // One decision's failure must not stop the others; the next plan decides again.
        this.#log.error(
          { err, decision: d.type, operationId: "operationId" in d ? d.operationId : undefined },
          `could not carry out ${d.type}; the next pass decides again`,
        );
      }
    }
    return replan;
  }

  async #terminate(
    d: TerminateDecision,
    existing: ReadonlySet<string>,
    signal: AbortSignal,
  ): Promise<void> {
    await this.#capacity.terminate(d.ids, signal);
    const now = this.#clock.now();
    const byOperation = new Map<string, string[]>();
    for (const id of d.ids) {
      const t = this.#instances.get(id);
      if (t) {
        t.terminated = d.cause;
        t.endReason = `terminated (${d.cause}): ${d.reason}`;
        if (isLive(t.state)) this.#setState(t, "shutting-down", now);
        byOperation.set(t.operationId, [...(byOperation.get(t.operationId) ?? []), id]);
      }
    }
    this.#log.info({ ids: d.ids, cause: d.cause }, `terminated ${d.ids.length} instance(s)`);
    for (const [op, ids] of byOperation) {
      this.#event(
        op,
        "instance-terminated",
        `terminated ${ids.join(", ")} (${d.cause}): ${d.reason}`,
        {
          ids,
          cause: d.cause,
        },
      );
    }
    if (d.cause === "orphan") {
      // Orphans are unknown by definition; note them on their operation when it still exists.
      for (const i of this.#discovered) {
        const op = i.tags[FLEET_TAGS.operation];
        if (d.ids.includes(i.instanceId) && op && existing.has(op)) {
          this.#event(
            op,
            "instance-terminated",
            `terminated ${i.instanceId} (orphan): ${d.reason}`,
            {
              ids: [i.instanceId],
              cause: d.cause,
            },
          );
        }
      }
    }
  }

  async #copyToStraggler(
    operationId: string,
    shardId: string,
    reason: string,
    manifests: Map<string, Manifest>,
    signal: AbortSignal,
  ): Promise<void> {
    const range = manifests.get(operationId)?.shards?.find((s) => s.id === shardId);
    if (!range) throw new Error(`shard ${shardId} is not in operation ${operationId}'s manifest`);
    if (!this.#stragglerQueueUrl) {
      if (!this.#warnedNoStragglerQueue) {
        this.#warnedNoStragglerQueue = true;
        this.#log.warn(
          "no straggler queue configured (SHARDFLEET_STRAGGLER_QUEUE_URL): stragglers are not copied",
        );
      }
      this.#event(
        operationId,
        "straggler-copied",
        `shard ${shardId} is a straggler (${reason}) but no straggler queue is configured: not copied`,
        { shardId },
      );
      return;
    }
    await this.#queue.sendShards(
      this.#stragglerQueueUrl,
      [{ v: 1, operationId, shardId, start: range.start, end: range.end }],
      signal,
    );
    this.#event(
      operationId,
      "straggler-copied",
      `shard ${shardId} copied to the straggler queue: ${reason}`,
      { shardId },
    );
  }

  /** One launch decision; true when the result had errors (re-plan before launching more). */
  async #launch(d: LaunchDecision, signal: AbortSignal): Promise<boolean> {
    const log = this.#log.child({ operationId: d.operationId });
    const pools = d.pools.map(poolLabel).join(", ");
    if (d.role === "worker") {
      // Said once when the fallback starts, not on every on-demand launch while it lasts.
      if (d.market === "spot") this.#onDemandFallback.delete(d.operationId);
      else if (!this.#onDemandFallback.has(d.operationId)) {
        this.#onDemandFallback.add(d.operationId);
        this.#event(
          d.operationId,
          "fallback-on-demand",
          `worker capacity falls back to on-demand: ${d.reason}`,
        );
      }
    }
    const request = toLaunchRequest(d, { fleet: this.#fleet, clientToken: newClientToken() });
    this.#event(
      d.operationId,
      "launch-requested",
      `requested ${d.count} ${d.market} ${d.role} instance(s) in ${pools}: ${d.reason}`,
      { clientToken: request.clientToken },
    );
    let result: LaunchResult;
    try {
      result = await this.#launchWithRetries(request, log, signal);
    } catch (err) {
      if (signal.aborted) throw err;
      this.#memory = recordLaunchError(this.#memory, d, err);
      const fatal = err instanceof CapacityConfigError;
      this.#event(
        d.operationId,
        "launch-failed",
        `launch of ${d.count} ${d.market} instance(s) failed${fatal ? " (cannot be retried)" : ""}: ${describeError(err)}`,
      );
      log.error({ err, clientToken: request.clientToken }, "launch failed");
      return true;
    }
    const now = this.#clock.now();
    for (const f of fleetInstancesFrom(d, result.launched)) {
      const launched = result.launched.find((i) => i.instanceId === f.id);
      const t: Tracked = {
        id: f.id,
        operationId: f.operationId,
        role: f.role,
        market: f.market,
        instanceType: f.instanceType,
        ...(launched?.availabilityZone ? { availabilityZone: launched.availabilityZone } : {}),
        state: f.state,
        launchedAt: f.launchedAt,
        since: now,
      };
      this.#instances.set(t.id, t);
      this.#touchInstance(t);
    }
    this.#memory = recordLaunchOutcome(this.#memory, d, result, now);
    const ids = result.launched.map((i) => i.instanceId).join(", ");
    if (result.errors.length === 0) {
      this.#event(
        d.operationId,
        "launch-fulfilled",
        `${result.launched.length} ${d.market} instance(s) launched: ${ids}`,
      );
    } else if (result.launched.length > 0) {
      this.#event(
        d.operationId,
        "launch-partial",
        `${result.launched.length} of ${d.count} ${d.market} instance(s) launched (${ids}); ${result.errors.length} error(s)`,
      );
    } else {
      this.#event(
        d.operationId,
        "launch-failed",
        `none of ${d.count} ${d.market} instance(s) launched`,
      );
    }
    for (const e of result.errors) {
      this.#event(d.operationId, "capacity-error", capacityErrorLine(e, d.market), {
        code: e.code,
        kind: e.kind,
        ...(e.pool ? { pool: poolLabel(e.pool) } : {}),
      });
    }
    log.info(
      {
        market: d.market,
        role: d.role,
        requested: d.count,
        launched: result.launched.length,
        errors: result.errors.length,
        clientToken: request.clientToken,
      },
      "launch carried out",
    );
    return result.errors.length > 0;
  }

  /** Retries a RetryableError with the SAME request (same client token): no double launch. */
  async #launchWithRetries(
    request: LaunchRequest,
    log: Logger,
    signal: AbortSignal,
  ): Promise<LaunchResult> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#capacity.launch(request, signal);
      } catch (err) {
        if (!(err instanceof RetryableError) || attempt >= this.#launchRetries || signal.aborted) {
          throw err;
        }
        const delay = this.#launchRetryDelayMs * 2 ** attempt;
        log.warn(
          { err, clientToken: request.clientToken, retryInMs: delay },
          "launch failed; retrying with the same client token",
        );
        await this.#clock.sleep(delay, signal);
      }
    }
  }

  async #setWaiting(
    operationId: string,
    since: number,
    reason: string,
    manifests: Map<string, Manifest>,
    signal: AbortSignal,
  ): Promise<void> {
    await this.#writeWaiting(operationId, { since, reason }, manifests, signal);
    this.#event(operationId, "waiting-for-capacity", reason);
  }

  async #clearWaiting(
    operationId: string,
    manifests: Map<string, Manifest>,
    signal: AbortSignal,
  ): Promise<void> {
    await this.#writeWaiting(operationId, undefined, manifests, signal);
    this.#event(operationId, "capacity-restored", "capacity is live again; no longer waiting");
  }

  /**
   * Sets or clears `waiting-for-capacity`. Re-reads the manifest first: the scheduler writes it
   * too (split, merge), and its newer status must not be overwritten with a stale one.
   */
  async #writeWaiting(
    operationId: string,
    waiting: { since: number; reason: string } | undefined,
    manifests: Map<string, Manifest>,
    signal: AbortSignal,
  ): Promise<void> {
    const latest = await loadManifest(this.#store, operationId, signal);
    if (!latest) return;
    let next: Manifest | undefined;
    if (
      waiting &&
      (latest.status === "running" ||
        latest.status === "splitting" ||
        latest.status === "waiting-for-capacity")
    ) {
      const value = { since: new Date(waiting.since).toISOString(), reason: waiting.reason };
      if (latest.status === "waiting-for-capacity" && latest.waiting?.reason === value.reason)
        return;
      next = { ...latest, status: "waiting-for-capacity", waiting: value };
    } else if (!waiting && latest.status === "waiting-for-capacity") {
      const { waiting: _gone, ...rest } = latest;
      next = { ...rest, status: latest.shards ? "running" : "splitting" };
    }
    if (!next) return;
    const saved = await saveManifest({ store: this.#store, clock: this.#clock }, next, signal);
    manifests.set(operationId, saved);
    this.#log.info(
      { operationId, status: saved.status, reason: waiting?.reason },
      waiting ? "operation waiting for capacity" : "operation no longer waiting for capacity",
    );
  }

  async #failOperation(
    operationId: string,
    code: string,
    message: string,
    manifests: Map<string, Manifest>,
    signal: AbortSignal,
  ): Promise<void> {
    const latest = await loadManifest(this.#store, operationId, signal);
    if (!latest || TERMINAL_STATUSES.has(latest.status) || latest.status === "merging") return;
    const { waiting: _gone, ...rest } = latest;
    const saved = await saveManifest(
      { store: this.#store, clock: this.#clock },
      {
        ...rest,
        status: "failed",
        error: { code, message },
        finishedAt: new Date(this.#clock.now()).toISOString(),
      },
      signal,
    );
    manifests.set(operationId, saved);
    this.#terminal.add(operationId);
    this.#event(operationId, "operation-failed", `${code}: ${message}`);
    this.#log.error({ operationId, code }, `operation failed: ${message}`);
  }

  /**
   * The scheduler's split writes `running` from its own copy of the manifest and may overwrite
   * `waiting-for-capacity`; a restart empties the policy's memory. Make the manifest agree with
   * the policy's view again.
   */
  async #reconcileStatuses(manifests: Map<string, Manifest>, signal: AbortSignal): Promise<void> {
    for (const [id, m] of manifests) {
      const mem = this.#memory.operations[id];
      if (mem?.failed) continue;
      const waiting = mem?.waiting;
      const shows = m.status === "waiting-for-capacity";
      if (waiting !== undefined && !shows && (m.status === "running" || m.status === "splitting")) {
        await this.#writeWaiting(
          id,
          { since: mem?.unfulfilledSince ?? this.#clock.now(), reason: waiting },
          manifests,
          signal,
        ).catch((err: unknown) =>
          this.#log.warn({ err, operationId: id }, "could not re-publish waiting"),
        );
      } else if (waiting === undefined && shows) {
        await this.#writeWaiting(id, undefined, manifests, signal).catch((err: unknown) =>
          this.#log.warn({ err, operationId: id }, "could not clear waiting"),
        );
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Recording

  #pendingFor(operationId: string): PendingRecord {
    let p = this.#pending.get(operationId);
    if (!p) {
      p = { events: [], instances: new Set() };
      this.#pending.set(operationId, p);
    }
    return p;
  }

  #event(
    operationId: string,
    kind: FleetEventKind,
    message: string,
    details: Record<string, unknown> = {},
  ): void {
    this.#pendingFor(operationId).events.push({
      at: new Date(this.#clock.now()).toISOString(),
      kind,
      message,
    });
    this.#log.info({ operationId, event: kind, ...details }, message);
  }

  #touchInstance(t: Tracked): void {
    this.#pendingFor(t.operationId).instances.add(t.id);
  }

  async #loadRecord(operationId: string, signal?: AbortSignal): Promise<FleetRecord | undefined> {
    const cached = this.#records.get(operationId);
    if (cached) return cached;
    const record = await this.#store.getJson(keys.fleet(operationId), fleetRecordSchema, signal);
    if (record) this.#records.set(operationId, record);
    return record;
  }

  /**
   * Writes every operation's pending events and instance changes into its fleet record. Passes
   * and spot signals both flush: writes go one after another, and what is recorded while a write
   * is in flight stays pending for the next.
   */
  #flush(signal?: AbortSignal): Promise<void> {
    const run = this.#flushing.then(() => this.#flushNow(signal));
    this.#flushing = run.catch(() => {});
    return run;
  }

  async #flushNow(signal?: AbortSignal): Promise<void> {
    const ops = [...this.#pending.keys()];
    await mapLimit(ops, 8, async (operationId) => {
      const pending = this.#pending.get(operationId);
      if (!pending) return;
      // Taken: events recorded from now on go to a fresh pending record.
      this.#pending.delete(operationId);
      try {
        const base = (await this.#loadRecord(operationId, signal)) ?? emptyRecord(operationId);
        const instances = new Map(base.instances.map((i) => [i.id, i]));
        for (const id of pending.instances) {
          const t = this.#instances.get(id) ?? this.#ended.get(id);
          if (t) instances.set(id, toRecord(t));
        }
        const events = [...base.events, ...pending.events];
        const dropped = Math.max(0, events.length - MAX_FLEET_EVENTS);
        const record: FleetRecord = {
          v: 1,
          operationId,
          instances: [...instances.values()],
          events: events.slice(dropped),
          droppedEvents: base.droppedEvents + dropped,
          updatedAt: new Date(this.#clock.now()).toISOString(),
        };
        await this.#store.putJson(keys.fleet(operationId), fleetRecordSchema, record, signal);
        if (this.#watched.has(operationId)) this.#records.set(operationId, record);
        else this.#records.delete(operationId);
        const again = this.#pending.get(operationId)?.instances;
        for (const id of pending.instances) if (!again?.has(id)) this.#ended.delete(id);
      } catch (err) {
        // Put back in front of whatever was recorded meanwhile.
        const now = this.#pendingFor(operationId);
        now.events.unshift(...pending.events);
        for (const id of pending.instances) now.instances.add(id);
        if (signal?.aborted) throw err;
        // Kept pending: the next pass writes it.
        this.#log.warn(
          { err, operationId },
          "could not write the fleet record; retrying next pass",
        );
      }
    });
  }
}

function emptyRecord(operationId: string): FleetRecord {
  return {
    v: 1,
    operationId,
    instances: [],
    events: [],
    droppedEvents: 0,
    updatedAt: new Date(0).toISOString(),
  };
}

function toRecord(t: Tracked): FleetInstanceRecord {
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

function capacityErrorLine(e: CapacityError, market: string): string {
  const where = e.pool ? ` in ${poolLabel(e.pool)}` : "";
  return `${e.code}${where} (${e.market ?? market}, ${e.kind}): ${e.message}`;
}
