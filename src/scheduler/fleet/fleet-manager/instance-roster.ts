/**
 * The fleet manager's roster of instances: those it launched or adopted and has not seen end
 * (live), ended ones kept until their end is recorded, and the ids of every instance seen end
 * (their `running` attempts are dead). It folds in what the loop observes — the provider's view
 * (state changes, losses, disappearances) and shard activity (busy, idle since when) — adopts the
 * instances recorded in fleet records on the first pass, and gives the policy its view
 * (`fleetInstances`). Every change is noted in ./fleet-records.ts, to be written.
 */

import { mapLimit } from "../../../shared/async.ts";
import type { InstanceInfo, InstanceState } from "../../../shared/capacity.ts";
import type { Clock } from "../../../shared/clock.ts";
import type { Logger } from "../../../shared/logger.ts";
import type { Manifest } from "../../../shared/schemas/operation.ts";
import type { InstanceActivity } from "../observe.ts";
import { type FleetInstance, isLive } from "../policy.ts";
import type { FleetRecords } from "./fleet-records.ts";
import { type TrackedInstance, toFleetInstance, trackedFromRecord } from "./tracked-instance.ts";

export interface InstanceRosterDeps {
  records: FleetRecords;
  clock: Clock;
  logger: Logger;
}

export class InstanceRoster {
  readonly #records: FleetRecords;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #instances = new Map<string, TrackedInstance>();
  /** Ended instances, kept until their end is recorded. */
  readonly #ended = new Map<string, TrackedInstance>();
  /** Ids of every instance seen end: their `running` attempts are dead. */
  readonly #gone = new Set<string>();
  #adopted = false;

  constructor(deps: InstanceRosterDeps) {
    this.#records = deps.records;
    this.#clock = deps.clock;
    this.#log = deps.logger;
  }

  /** Whether the instances recorded in fleet records have been adopted (the first pass did it). */
  get adopted(): boolean {
    return this.#adopted;
  }

  /** A live (not yet ended) tracked instance. */
  get(id: string): TrackedInstance | undefined {
    return this.#instances.get(id);
  }

  /** A tracked instance, live or ended but not yet recorded as ended. */
  find(id: string): TrackedInstance | undefined {
    return this.#instances.get(id) ?? this.#ended.get(id);
  }

  /** Whether the instance was seen end. */
  hasEnded(id: string): boolean {
    return this.#gone.has(id);
  }

  /** Its end is recorded: an ended instance is no longer kept. */
  release(id: string): void {
    this.#ended.delete(id);
  }

  /** Tracks an instance just launched. */
  add(t: TrackedInstance): void {
    this.#instances.set(t.id, t);
    this.#records.touch(t);
  }

  /**
   * First pass only: take over the instances the fleet records of unfinished operations list
   * as not ended, so a restarted scheduler neither loses nor "orphans" them.
   */
  async adopt(manifests: readonly Manifest[], signal: AbortSignal): Promise<void> {
    await mapLimit(manifests, 8, async (m) => {
      const record = await this.#records.load(m.id, signal);
      if (!record) return;
      for (const i of record.instances) {
        if (i.state === "terminated" || this.#instances.has(i.id)) continue;
        this.#instances.set(i.id, trackedFromRecord(m.id, i));
      }
    });
    if (this.#instances.size > 0) {
      this.#log.info({ instances: this.#instances.size }, "adopted instances from fleet records");
    }
    this.#adopted = true;
  }

  /**
   * Folds the provider's view into the tracked instances: state changes, losses, disappearances.
   * One it no longer lists is taken as terminated once older than `orphanGraceMs`.
   */
  reconcile(discovered: readonly InstanceInfo[], orphanGraceMs: number): void {
    const now = this.#clock.now();
    const seen = new Map(discovered.map((i) => [i.instanceId, i]));
    for (const t of [...this.#instances.values()]) {
      const d = seen.get(t.id);
      // Missing: EC2 lists new instances late and forgets terminated ones after about an hour.
      const state: InstanceState | undefined = d
        ? d.state
        : now - t.launchedAt > orphanGraceMs
          ? "terminated"
          : undefined;
      if (!state || state === t.state) continue;
      const ended = state === "terminated" || state === "shutting-down";
      if (ended && !t.terminated && !t.endReason) {
        t.endReason = d
          ? "ended without being asked (spot reclaim or failure)"
          : "no longer listed by the provider";
        this.#records.event(
          t.operationId,
          "instance-lost",
          `${t.id} (${t.market}, ${t.role}) ${t.endReason}`,
          { instanceId: t.id, market: t.market },
        );
      }
      this.setState(t, state, now);
    }
  }

  /** Moves the instance to `state` (a terminated one leaves the live set) and notes the change. */
  setState(t: TrackedInstance, state: InstanceState, now: number): void {
    t.state = state;
    t.since = now;
    this.#records.touch(t);
    if (state === "terminated") {
      this.#instances.delete(t.id);
      this.#ended.set(t.id, t);
      this.#gone.add(t.id);
    }
  }

  /** Whether the instance is known to be gone (not live, or seen end): its attempts are dead. */
  isGone(instanceId: string): boolean {
    const t = this.#instances.get(instanceId);
    if (t) return !isLive(t.state);
    return this.#gone.has(instanceId);
  }

  /** Folds shard activity in: when each instance was last busy; a pending one seen working runs. */
  noteActivity(activity: ReadonlyMap<string, InstanceActivity>): void {
    const now = this.#clock.now();
    for (const [id, act] of activity) {
      const t = this.#instances.get(id);
      if (!t) continue;
      // Busy now: when it goes idle, it has been idle since about now.
      const busy = act.running > 0 ? now : act.lastEndedAt;
      if (busy !== undefined && busy > (t.lastBusyAt ?? 0)) t.lastBusyAt = busy;
      // A worker that ran a shard is up, whether or not its report was seen.
      if (busy !== undefined) t.reportedAt ??= now;
      if (t.state === "pending" && act.running > 0) this.setState(t, "running", now);
    }
  }

  /**
   * Notes which live instances' workers have reported up (src/shared/records/worker-report.ts):
   * one HEAD per instance not yet heard of, none once it has been. Idle time counts from here.
   */
  async noteReports(
    reported: (instanceId: string, signal: AbortSignal) => Promise<boolean>,
    signal: AbortSignal,
  ): Promise<void> {
    const waiting = [...this.#instances.values()].filter(
      (t) => t.reportedAt === undefined && !t.terminated && isLive(t.state),
    );
    await mapLimit(waiting, 16, async (t) => {
      if (await reported(t.id, signal)) t.reportedAt = this.#clock.now();
    });
  }

  /** The policy's view: tracked instances not yet ended whose termination was not asked for. */
  fleetInstances(activity: ReadonlyMap<string, InstanceActivity>): FleetInstance[] {
    return [...this.#instances.values()]
      .filter((t) => !t.terminated)
      .map((t) => toFleetInstance(t, activity));
  }
}
