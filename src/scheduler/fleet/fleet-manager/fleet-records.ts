/**
 * The fleet records: one per operation in S3 (`keys.fleet(op)`, which the API shows), listing its
 * instances, the fleet events that explain them and whether the operation waits for capacity.
 * This module is the only code that builds and writes them. Events, instance changes and the
 * wait are collected as they happen (`event`, `touch`, `wait`) and written by `flush`. Passes and spot signals both flush, so
 * writes go through a serialized queue — one at a time, so none overwrites another's events — and
 * what is recorded while a write is in flight stays pending for the next. A write that fails is
 * put back in front of what was recorded meanwhile and retried by the next flush. Records of the
 * operations the loop watches are cached after they are read or written.
 */
import { mapLimit } from "../../../shared/async.ts";
import type { Clock } from "../../../shared/clock.ts";
import { keys } from "../../../shared/keys.ts";
import type { Logger } from "../../../shared/logger.ts";
import type { ObjectStore } from "../../../shared/object-store.ts";
import {
  type CapacityWait,
  type FleetEvent,
  type FleetEventKind,
  type FleetRecord,
  fleetRecordSchema,
  MAX_FLEET_EVENTS,
} from "../../../shared/schemas/fleet.ts";
import { type TrackedInstance, toInstanceRecord } from "./tracked-instance.ts";

export interface FleetRecordsDeps {
  store: ObjectStore;
  clock: Clock;
  /** Every event is logged too, with the operation id and its details. */
  logger: Logger;
  /** The tracked instance (live or ended) whose current state a write records. */
  instance(id: string): TrackedInstance | undefined;
  /** The instance's latest change is written and no newer one is pending: an ended one may go. */
  written(id: string): void;
  /** Whether the loop still watches the operation (then its record stays cached). */
  isWatched(operationId: string): boolean;
}

interface PendingRecord {
  events: FleetEvent[];
  instances: Set<string>;
  /** The wait to write: a value to set, null to clear, undefined to keep what is recorded. */
  waiting?: CapacityWait | null;
}

export class FleetRecords {
  readonly #store: ObjectStore;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #deps: FleetRecordsDeps;
  /** Events and instance changes not yet written, by operation. */
  readonly #pending = new Map<string, PendingRecord>();
  /** Fleet records as last written, by operation (unfinished operations only). */
  readonly #records = new Map<string, FleetRecord>();
  /** The fleet record writes in flight: one at a time, so none overwrites another's events. */
  #flushing: Promise<void> = Promise.resolve();

  constructor(deps: FleetRecordsDeps) {
    this.#store = deps.store;
    this.#clock = deps.clock;
    this.#log = deps.logger;
    this.#deps = deps;
  }

  /** Records a fleet event of the operation (written by the next flush) and logs it. */
  event(
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

  /**
   * Notes that the operation waits for capacity (since when, why), or no longer does
   * (`undefined`): the next flush writes it. The view shows it as `waiting-for-capacity`.
   */
  wait(operationId: string, waiting: { since: number; reason: string } | undefined): void {
    this.#pendingFor(operationId).waiting = waiting
      ? { since: new Date(waiting.since).toISOString(), reason: waiting.reason }
      : null;
  }

  /** Notes that the instance changed: the next flush writes its current state. */
  touch(t: TrackedInstance): void {
    this.#pendingFor(t.operationId).instances.add(t.id);
  }

  /** The operation's fleet record: cached, or read from the store (undefined when there is none). */
  async load(operationId: string, signal?: AbortSignal): Promise<FleetRecord | undefined> {
    const cached = this.#records.get(operationId);
    if (cached) return cached;
    const record = await this.#store.getJson(keys.fleet(operationId), fleetRecordSchema, signal);
    if (record) this.#records.set(operationId, record);
    return record;
  }

  /** Drops the cached record of an operation the loop no longer watches. */
  forget(operationId: string): void {
    this.#records.delete(operationId);
  }

  /**
   * Writes every operation's pending events and instance changes into its fleet record. Passes
   * and spot signals both flush: writes go one after another, and what is recorded while a write
   * is in flight stays pending for the next.
   */
  flush(signal?: AbortSignal): Promise<void> {
    const run = this.#flushing.then(() => this.#flushNow(signal));
    this.#flushing = run.catch(() => {});
    return run;
  }

  /** Whether the operation has events or instance changes not yet written (e.g. a write failed). */
  isPending(operationId: string): boolean {
    return this.#pending.has(operationId);
  }

  #pendingFor(operationId: string): PendingRecord {
    let p = this.#pending.get(operationId);
    if (!p) {
      p = { events: [], instances: new Set() };
      this.#pending.set(operationId, p);
    }
    return p;
  }

  async #flushNow(signal?: AbortSignal): Promise<void> {
    const ops = [...this.#pending.keys()];
    await mapLimit(ops, 8, async (operationId) => {
      const pending = this.#pending.get(operationId);
      if (!pending) return;
      // Taken: events recorded from now on go to a fresh pending record.
      this.#pending.delete(operationId);
      try {
        const base = (await this.load(operationId, signal)) ?? emptyRecord(operationId);
        const instances = new Map(base.instances.map((i) => [i.id, i]));
        for (const id of pending.instances) {
          const t = this.#deps.instance(id);
          if (t) instances.set(id, toInstanceRecord(t));
        }
        const events = [...base.events, ...pending.events];
        const dropped = Math.max(0, events.length - MAX_FLEET_EVENTS);
        const waiting = pending.waiting === undefined ? base.waiting : pending.waiting;
        const record: FleetRecord = {
          v: 1,
          operationId,
          instances: [...instances.values()],
          events: events.slice(dropped),
          droppedEvents: base.droppedEvents + dropped,
          ...(waiting ? { waiting } : {}),
          updatedAt: new Date(this.#clock.now()).toISOString(),
        };
        await this.#store.putJson(keys.fleet(operationId), fleetRecordSchema, record, signal);
        if (this.#deps.isWatched(operationId)) this.#records.set(operationId, record);
        else this.#records.delete(operationId);
        const again = this.#pending.get(operationId)?.instances;
        for (const id of pending.instances) if (!again?.has(id)) this.#deps.written(id);
      } catch (err) {
        // Put back in front of whatever was recorded meanwhile.
        const now = this.#pendingFor(operationId);
        now.events.unshift(...pending.events);
        for (const id of pending.instances) now.instances.add(id);
        // A wait noted meanwhile is newer than the one that failed to be written.
        if (now.waiting === undefined && pending.waiting !== undefined)
          now.waiting = pending.waiting;
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
