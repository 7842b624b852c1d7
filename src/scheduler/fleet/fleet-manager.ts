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
 *      reports errors makes the remaining launches wait for a re-plan), record that an
 *      operation waits for capacity (its fleet record; the view shows `waiting-for-capacity`) or
 *      ask the operation state machine to fail it;
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
 * This module is the loop and its lifecycle; what it does with each step lives in
 * ./fleet-manager/: observe-operations.ts (manifests, shard observations, recorded waits),
 * instance-roster.ts (the instances it tracks, folded from the provider's view and activity),
 * decision-runner.ts with launcher.ts and operation-status.ts (carrying the plan out),
 * fleet-records.ts (the fleet records and their serialized writes), spot-signal.ts
 * (`applySpotSignal`), tracked-instance.ts (a tracked instance and its mappings).
 *
 * Lifecycle: idle → running (start) → draining (stop: abort the pass, flush records) → stopped.
 */

import { mapLimit } from "../../shared/async.ts";
import { type CapacityProvider, FLEET_TAGS, poolLabel } from "../../shared/capacity.ts";
import type { Clock } from "../../shared/clock.ts";
import { FinishedOperations } from "../../shared/finished-operations.ts";
import type { Logger } from "../../shared/logger.ts";
import type { ObjectStore } from "../../shared/object-store.ts";
import { PeriodicService, type ServiceState } from "../../shared/periodic-service.ts";
import { hasWorkerReported } from "../../shared/records/worker-report.ts";
import { type Manifest, tenantOf } from "../../shared/schemas/operation.ts";
import type { SpotSignal } from "../../shared/schemas/spot-events.ts";
import type { ShardQueue } from "../../shared/shard-queue.ts";
import { OperationLifecycle } from "../operation-lifecycle.ts";
import { DEFAULT_LAUNCH_CONCURRENCY, DecisionRunner } from "./fleet-manager/decision-runner.ts";
import { FleetRecords } from "./fleet-manager/fleet-records.ts";
import { InstanceRoster } from "./fleet-manager/instance-roster.ts";
import { Launcher } from "./fleet-manager/launcher.ts";
import {
  combineObservations,
  observeOperations,
  seedWaiting,
} from "./fleet-manager/observe-operations.ts";
import { observeSources } from "./fleet-manager/observe-source.ts";
import { OperationStatuses } from "./fleet-manager/operation-status.ts";
import { applySpotSignal, type SpotSignalOutcome } from "./fleet-manager/spot-signal.ts";
import { ShardActivityReader } from "./observe.ts";
import {
  emptyFleetMemory,
  type FleetMemory,
  type FleetPolicyOptions,
  type FleetState,
  type PriceTable,
  planFleet,
  type ResolvedFleetPolicy,
  resolveFleetPolicy,
  type SourceBudget,
} from "./policy.ts";

export type { SpotSignalOutcome } from "./fleet-manager/spot-signal.ts";

export interface FleetManagerDeps {
  capacity: CapacityProvider;
  queue: ShardQueue;
  store: ObjectStore;
  logger: Logger;
  clock: Clock;
  /**
   * The scheduler lease's tenure: `check` throws once this process may no longer act, so no
   * pass starts after the lease is lost. @default undefined (no lease)
   */
  fence?: { check(): void };
  /**
   * The process's one set of finished operations, shared with the scheduler's loop, so a
   * finished manifest is read again (for a retry accepted elsewhere) once per recheck, not once
   * per loop. @default a set of its own
   */
  finished?: FinishedOperations;
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
  /** Retries of a launch call that threw a RetryableError (same request, same token). @default 2 */
  launchRetries?: number;
  /** First retry delay, doubled each retry. @default 1000 */
  launchRetryDelayMs?: number;
  /**
   * Launch calls of one plan carried out at once (./fleet-manager/decision-runner.ts).
   * @default DEFAULT_LAUNCH_CONCURRENCY (5)
   */
  launchConcurrency?: number;
}

export type FleetManagerState = ServiceState;

/** Re-plans allowed in one pass after launches that reported errors (each cools pools, so this converges fast). */
const MAX_PLANS_PER_PASS = 4;

export class FleetManager {
  readonly #capacity: CapacityProvider;
  readonly #store: ObjectStore;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #fence: FleetManagerDeps["fence"];
  readonly #fleet: string;
  readonly #policyOptions: FleetPolicyOptions;
  readonly #policy: ResolvedFleetPolicy;
  readonly #prices: PriceTable;
  readonly #intervalMs: number;
  readonly #shards: ShardActivityReader;
  readonly #records: FleetRecords;
  readonly #roster: InstanceRoster;
  readonly #statuses: OperationStatuses;
  readonly #launcher: Launcher;
  readonly #decisions: DecisionRunner;

  #memory: FleetMemory = emptyFleetMemory();
  /** Operations known to be finished: never read again. */
  readonly #terminal: FinishedOperations;
  /** Operations watched on the previous pass (to forget caches of those that left). */
  #watched = new Set<string>();
  /** Budgeted operations' sources as last observed (stand-ins when their records are unread). */
  #sources = new Map<string, SourceBudget>();

  readonly #service: PeriodicService;

  constructor(deps: FleetManagerDeps, options: FleetManagerOptions) {
    this.#capacity = deps.capacity;
    this.#store = deps.store;
    this.#log = deps.logger.child({ module: "fleet-manager", fleet: options.fleet });
    this.#clock = deps.clock;
    this.#terminal = deps.finished ?? new FinishedOperations({ clock: deps.clock });
    this.#fence = deps.fence;
    this.#fleet = options.fleet;
    this.#policyOptions = options.policy;
    this.#policy = resolveFleetPolicy(options.policy);
    this.#prices = options.prices;
    this.#intervalMs = options.intervalMs ?? 5000;
    this.#shards = new ShardActivityReader({ store: deps.store });
    const common = { clock: deps.clock, logger: this.#log };
    this.#records = new FleetRecords({
      ...common,
      store: deps.store,
      instance: (id) => this.#roster.find(id),
      written: (id) => this.#roster.release(id),
      isWatched: (operationId) => this.#watched.has(operationId),
    });
    this.#roster = new InstanceRoster({ ...common, records: this.#records });
    this.#statuses = new OperationStatuses({
      ...common,
      records: this.#records,
      lifecycle: new OperationLifecycle({ ...common, store: deps.store }),
      terminal: this.#terminal,
    });
    this.#launcher = new Launcher(
      {
        ...common,
        capacity: deps.capacity,
        roster: this.#roster,
        records: this.#records,
        memory: {
          get: () => this.#memory,
          set: (memory) => {
            this.#memory = memory;
          },
        },
      },
      {
        fleet: options.fleet,
        launchRetries: options.launchRetries ?? 2,
        launchRetryDelayMs: options.launchRetryDelayMs ?? 1000,
      },
    );
    this.#decisions = new DecisionRunner(
      {
        ...common,
        capacity: deps.capacity,
        queue: deps.queue,
        roster: this.#roster,
        records: this.#records,
        launcher: this.#launcher,
        statuses: this.#statuses,
      },
      {
        stragglerQueueUrl: options.stragglerQueueUrl,
        launchConcurrency: options.launchConcurrency ?? DEFAULT_LAUNCH_CONCURRENCY,
      },
    );
    this.#service = new PeriodicService(
      { clock: deps.clock, logger: this.#log },
      { name: "fleet manager", intervalMs: this.#intervalMs, drain: () => this.#records.flush() },
      (signal) => this.tick(signal),
    );
  }

  get state(): FleetManagerState {
    return this.#service.state;
  }

  /**
   * The fleet records this manager writes, for other loops of the same scheduler that add fleet
   * events (the sweep's re-drives): one writer per fleet record, whoever has news.
   */
  get fleetRecords(): FleetRecords {
    return this.#records;
  }

  /** The policy memory after the last plan (tests, diagnostics). */
  get memory(): FleetMemory {
    return this.#memory;
  }

  /** Starts the loop; its first pass adopts recorded instances and sweeps orphans. */
  start(): void {
    this.#service.start({
      intervalMs: this.#intervalMs,
      pools: this.#policy.pools.map(poolLabel),
      maxInstances: this.#policy.maxInstances,
      maxHourlyUsd: this.#policy.maxHourlyUsd,
    });
  }

  /** Stops the loop and writes pending records. Instances keep running (the next start adopts them). */
  stop(): Promise<void> {
    return this.#service.stop();
  }

  /** An operation finished before runs again (a retry of its failed rows): watch it again. */
  revive(operationId: string): void {
    this.#terminal.delete(operationId);
  }

  /** One pass: observe, plan, carry out, record (public so tests can drive passes). */
  async tick(signal: AbortSignal = this.#service.signal): Promise<void> {
    this.#fence?.check();
    const { manifests, read, existing } = await observeOperations(
      {
        store: this.#store,
        logger: this.#log,
        terminal: this.#terminal,
        readFinished: !this.#roster.adopted,
      },
      signal,
    );
    // Adopt from every operation, not only those needing capacity: a scheduler killed during a
    // merge (or just after an operation ended) left live instances in that operation's record.
    // Adopted, they are scaled in as `operation-ended` and their record says so; unadopted, they
    // would be swept as orphans while the record claimed them running.
    if (!this.#roster.adopted) await this.#roster.adopt(read, signal);
    for (const m of manifests) {
      if (this.#memory.operations[m.id]) continue;
      const recorded = await this.#records.load(m.id, signal);
      this.#memory = seedWaiting(this.#memory, m.id, recorded?.waiting, m.resumedAt);
    }

    const discovered = await this.#capacity.describe(
      { tags: { [FLEET_TAGS.fleet]: this.#fleet } },
      signal,
    );
    this.#roster.reconcile(discovered, this.#policy.orphanGraceMs);

    const combined = combineObservations(
      await mapLimit(manifests, 4, (m) =>
        this.#shards.read(m, (id) => this.#roster.isGone(id), signal),
      ),
    );
    const { activity } = combined;
    // Each operation's tenant, for the tenant caps (FleetPolicyOptions.tenantCaps).
    const tenants = new Map(manifests.map((m) => [m.id, tenantOf(m)]));
    // Each operation's own caps (PATCH /operations/:id), read from this pass's manifest.
    const caps = new Map(manifests.map((m) => [m.id, m.caps]));
    // Each budgeted operation's request budget and what its workers measured of the source.
    this.#sources = await observeSources(
      { store: this.#store, logger: this.#log },
      manifests,
      this.#clock.now(),
      signal,
      this.#sources,
    );
    const operations = combined.operations.map((op) => {
      const tenant = tenants.get(op.id);
      const own = caps.get(op.id);
      const withCaps =
        own?.maxInstances === undefined && own?.maxHourlyUsd === undefined
          ? op
          : {
              ...op,
              caps: {
                ...(own.maxInstances === undefined ? {} : { maxInstances: own.maxInstances }),
                ...(own.maxHourlyUsd === undefined ? {} : { maxHourlyUsd: own.maxHourlyUsd }),
              },
            };
      const source = this.#sources.get(op.id);
      const withSource = source === undefined ? withCaps : { ...withCaps, source };
      return tenant === undefined ? withSource : { ...withSource, tenant };
    });
    this.#roster.noteActivity(activity);
    // Idle time counts from a worker's report that it is up, not from its launch.
    await this.#roster.noteReports((id, sig) => hasWorkerReported(this.#store, id, sig), signal);
    this.#forgetUnwatched(manifests);

    const byId = new Map(manifests.map((m) => [m.id, m]));
    let withDiscovered = true;
    for (let round = 0; round < MAX_PLANS_PER_PASS; round++) {
      const state: FleetState = {
        operations,
        instances: this.#roster.fleetInstances(activity),
        // Only the first plan of a pass: later ones would see orphans already terminated as live.
        ...(withDiscovered ? { discovered } : {}),
        prices: this.#prices,
        memory: this.#memory,
      };
      withDiscovered = false;
      const plan = planFleet(state, this.#clock.now(), this.#policyOptions);
      this.#memory = plan.memory;
      const replan = await this.#decisions.carryOut(
        plan.decisions,
        { manifests: byId, existing, discovered },
        signal,
      );
      if (!replan) break;
    }
    await this.#statuses.retryFailures(byId, signal);
    await this.#records.flush(signal);
  }

  /**
   * Applies a spot signal: marks the instance (the next plan replaces an instance warned of an
   * interruption at once, and scales in one with a rebalance recommendation first), records a
   * fleet event and writes the fleet record before resolving, so the caller may then delete the
   * message. Idempotent: the same signal again is a `duplicate` and changes nothing.
   */
  applySpotSignal(signal: SpotSignal, abort?: AbortSignal): Promise<SpotSignalOutcome> {
    return applySpotSignal(signal, { roster: this.#roster, records: this.#records }, abort);
  }

  #forgetUnwatched(manifests: readonly Manifest[]): void {
    const now = new Set(manifests.map((m) => m.id));
    for (const id of this.#watched) {
      if (!now.has(id)) {
        this.#shards.forget(id);
        this.#records.forget(id);
        this.#launcher.forget(id);
      }
    }
    this.#watched = now;
  }
}
