/**
 * Carrying a plan out: the policy's decisions in order — terminate (through the capacity port),
 * copy stragglers to the straggler queue, launch (./launcher.ts), set or clear an operation's
 * wait for capacity and ask the state machine to fail it (./operation-status.ts), note that the
 * request budget holds launches back — each recorded as fleet events. One decision's
 * failure does not stop the others (the next plan decides again).
 *
 * Launches run concurrently, at most `launchConcurrency` CreateFleet calls at once (spot comes in
 * batches of five or six, so one call at a time makes a large fleet ramp slowly); every other
 * decision waits for the launches before it, so the plan's order otherwise holds. Once a launch
 * reports errors, no further launch of the plan starts and `carryOut` asks for a re-plan: they
 * were planned assuming it would succeed. Launches already in flight then run to their end and
 * are recorded like any other (their instances tracked, their errors cooling pools): a call
 * cannot be taken back, and dropping its result would leave its instances untracked. The re-plan
 * starts only after they have returned, so it sees every instance they started.
 */
import { type CapacityProvider, FLEET_TAGS, type InstanceInfo } from "../../../shared/capacity.ts";
import type { Clock } from "../../../shared/clock.ts";
import type { Logger } from "../../../shared/logger.ts";
import { currentShards, type Manifest, openRetry } from "../../../shared/schemas/operation.ts";
import type { ShardQueue } from "../../../shared/shard-queue.ts";
import {
  type FleetDecision,
  isLive,
  type LaunchDecision,
  type TerminateDecision,
} from "../policy.ts";
import type { FleetRecords } from "./fleet-records.ts";
import type { InstanceRoster } from "./instance-roster.ts";
import type { Launcher } from "./launcher.ts";
import type { OperationStatuses } from "./operation-status.ts";

export interface DecisionRunnerDeps {
  capacity: CapacityProvider;
  queue: ShardQueue;
  clock: Clock;
  logger: Logger;
  roster: InstanceRoster;
  records: FleetRecords;
  launcher: Launcher;
  statuses: OperationStatuses;
}

export interface DecisionRunnerOptions {
  /** Where straggler copies go; undefined: stragglers are reported but not copied. */
  stragglerQueueUrl: string | undefined;
  /** Launch calls of one plan carried out at once (at least 1). */
  launchConcurrency: number;
}

// Defined with its setting, SHARDFLEET_LAUNCH_CONCURRENCY.
export { DEFAULT_LAUNCH_CONCURRENCY } from "../../../shared/config.ts";

/** What the pass observed that carrying decisions out needs. */
export interface PassView {
  /** Manifests of the operations planned for, by id (updated when one is failed). */
  manifests: Map<string, Manifest>;
  /** Every operation id that exists (an orphan is noted on its operation when it still does). */
  existing: ReadonlySet<string>;
  /** The provider's view at the start of the pass (orphans are unknown otherwise). */
  discovered: readonly InstanceInfo[];
}

export class DecisionRunner {
  readonly #capacity: CapacityProvider;
  readonly #queue: ShardQueue;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #roster: InstanceRoster;
  readonly #records: FleetRecords;
  readonly #launcher: Launcher;
  readonly #statuses: OperationStatuses;
  readonly #stragglerQueueUrl: string | undefined;
  readonly #launchConcurrency: number;
  #warnedNoStragglerQueue = false;

  constructor(deps: DecisionRunnerDeps, options: DecisionRunnerOptions) {
    this.#capacity = deps.capacity;
    this.#queue = deps.queue;
    this.#clock = deps.clock;
    this.#log = deps.logger;
    this.#roster = deps.roster;
    this.#records = deps.records;
    this.#launcher = deps.launcher;
    this.#statuses = deps.statuses;
    this.#stragglerQueueUrl = options.stragglerQueueUrl;
    this.#launchConcurrency = Math.max(1, Math.floor(options.launchConcurrency));
  }

  /** Carries a plan out; true when a launch reported errors and the rest needs a re-plan. */
  async carryOut(
    decisions: readonly FleetDecision[],
    view: PassView,
    signal: AbortSignal,
  ): Promise<boolean> {
    const { manifests, existing } = view;
    let replan = false;
    /** The error of a launch cut short by the pass's abort (rethrown once the rest returned). */
    let aborted: { err: unknown } | undefined;
    const inFlight = new Set<Promise<void>>();
    const drain = async () => {
      while (inFlight.size > 0) await Promise.race(inFlight);
      if (aborted) throw aborted.err;
    };
    for (const d of decisions) {
      if (d.type === "launch") {
        while (inFlight.size >= this.#launchConcurrency) await Promise.race(inFlight);
        if (aborted) break;
        // Planned assuming earlier launches succeed: once one reported errors, re-plan.
        if (replan) continue;
        const call: Promise<void> = this.#launch(d, signal).then(
          (errors) => {
            inFlight.delete(call);
            if (errors) replan = true;
          },
          (err: unknown) => {
            inFlight.delete(call);
            aborted = { err };
          },
        );
        inFlight.add(call);
        continue;
      }
      // Every other decision keeps its place after the launches planned before it.
      await drain();
      try {
        switch (d.type) {
          case "terminate":
            await this.#terminate(d, existing, view.discovered, signal);
            break;
          case "copyToStraggler":
            await this.#copyToStraggler(d.operationId, d.shardId, d.reason, manifests, signal);
            break;
          case "setWaiting":
            this.#statuses.setWaiting(d.operationId, d.since, d.reason);
            break;
          case "clearWaiting":
            this.#statuses.clearWaiting(d.operationId);
            break;
          case "sourceLimited":
            this.#records.event(d.operationId, "source-limited", d.reason, {
              instances: d.instances,
            });
            break;
          case "failOperation":
            await this.#statuses.failOperation(d.operationId, d.code, d.message, manifests, signal);
            break;
        }
      } catch (err) {
        if (signal.aborted) throw err;
        this.#logFailure(d, err);
      }
    }
    await drain();
    return replan;
  }

  /** One launch; true when it reported errors. Throws only when the pass is aborted. */
  async #launch(d: LaunchDecision, signal: AbortSignal): Promise<boolean> {
    try {
      return await this.#launcher.launch(d, signal);
    } catch (err) {
      if (signal.aborted) throw err;
      this.#logFailure(d, err);
      return false;
    }
  }

  #logFailure(d: FleetDecision, err: unknown): void {
    // One decision's failure must not stop the others; the next plan decides again.
    this.#log.error(
      { err, decision: d.type, operationId: "operationId" in d ? d.operationId : undefined },
      `could not carry out ${d.type}; the next pass decides again`,
    );
  }

  async #terminate(
    d: TerminateDecision,
    existing: ReadonlySet<string>,
    discovered: readonly InstanceInfo[],
    signal: AbortSignal,
  ): Promise<void> {
    await this.#capacity.terminate(d.ids, signal);
    const now = this.#clock.now();
    const byOperation = new Map<string, string[]>();
    for (const id of d.ids) {
      const t = this.#roster.get(id);
      if (t) {
        t.terminated = d.cause;
        t.endReason = `terminated (${d.cause}): ${d.reason}`;
        if (isLive(t.state)) this.#roster.setState(t, "shutting-down", now);
        byOperation.set(t.operationId, [...(byOperation.get(t.operationId) ?? []), id]);
      }
    }
    this.#log.info({ ids: d.ids, cause: d.cause }, `terminated ${d.ids.length} instance(s)`);
    for (const [op, ids] of byOperation) {
      this.#records.event(
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
      for (const i of discovered) {
        const op = i.tags[FLEET_TAGS.operation];
        if (d.ids.includes(i.instanceId) && op && existing.has(op)) {
          this.#records.event(
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
    const manifest = manifests.get(operationId);
    // A retry's shards run under their own ids (and the retry's number).
    const retry = manifest && openRetry(manifest);
    const range = (manifest && currentShards(manifest))?.find((s) => s.id === shardId);
    if (!range) throw new Error(`shard ${shardId} is not in operation ${operationId}'s manifest`);
    if (!this.#stragglerQueueUrl) {
      if (!this.#warnedNoStragglerQueue) {
        this.#warnedNoStragglerQueue = true;
        this.#log.warn(
          "no straggler queue configured (SHARDFLEET_STRAGGLER_QUEUE_URL): stragglers are not copied",
        );
      }
      this.#records.event(
        operationId,
        "straggler-copied",
        `shard ${shardId} is a straggler (${reason}) but no straggler queue is configured: not copied`,
        { shardId },
      );
      return;
    }
    await this.#queue.sendShards(
      this.#stragglerQueueUrl,
      [
        {
          v: 1,
          operationId,
          shardId,
          start: range.start,
          end: range.end,
          ...(retry?.shards ? { retry: retry.number } : {}),
        },
      ],
      signal,
    );
    this.#records.event(
      operationId,
      "straggler-copied",
      `shard ${shardId} copied to the straggler queue: ${reason}`,
      { shardId },
    );
  }
}
