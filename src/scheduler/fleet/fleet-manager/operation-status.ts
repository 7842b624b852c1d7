/**
 * The operation statuses the fleet manager writes into manifests: `waiting-for-capacity` set and
 * cleared, and `failed` when the policy gives up on capacity. Every write re-reads the manifest
 * first — the scheduler writes it too (split, merge), and its newer status must not be overwritten
 * with a stale one — and records a fleet event. `reconcile` makes the manifests agree with the
 * policy's memory again after the split overwrote a wait or a restart emptied the memory.
 */
import type { Clock } from "../../../shared/clock.ts";
import type { Logger } from "../../../shared/logger.ts";
import type { ObjectStore } from "../../../shared/object-store.ts";
import { type Manifest, TERMINAL_STATUSES } from "../../../shared/schemas/operation.ts";
import { loadManifest, saveManifest } from "../../operations.ts";
import type { FleetMemory } from "../policy.ts";
import type { FleetRecords } from "./fleet-records.ts";

export interface OperationStatusesDeps {
  store: ObjectStore;
  clock: Clock;
  logger: Logger;
  records: FleetRecords;
  /** Operations known to be finished (the loop never reads them again): a failed one joins. */
  terminal: Set<string>;
}

export class OperationStatuses {
  readonly #store: ObjectStore;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #records: FleetRecords;
  readonly #terminal: Set<string>;

  constructor(deps: OperationStatusesDeps) {
    this.#store = deps.store;
    this.#clock = deps.clock;
    this.#log = deps.logger;
    this.#records = deps.records;
    this.#terminal = deps.terminal;
  }

  async setWaiting(
    operationId: string,
    since: number,
    reason: string,
    manifests: Map<string, Manifest>,
    signal: AbortSignal,
  ): Promise<void> {
    await this.#writeWaiting(operationId, { since, reason }, manifests, signal);
    this.#records.event(operationId, "waiting-for-capacity", reason);
  }

  async clearWaiting(
    operationId: string,
    manifests: Map<string, Manifest>,
    signal: AbortSignal,
  ): Promise<void> {
    await this.#writeWaiting(operationId, undefined, manifests, signal);
    this.#records.event(
      operationId,
      "capacity-restored",
      "capacity is live again; no longer waiting",
    );
  }

  async failOperation(
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
    this.#records.event(operationId, "operation-failed", `${code}: ${message}`);
    this.#log.error({ operationId, code }, `operation failed: ${message}`);
  }

  /**
   * The scheduler's split writes `running` from its own copy of the manifest and may overwrite
   * `waiting-for-capacity`; a restart empties the policy's memory. Make the manifest agree with
   * the policy's view again.
   */
  async reconcile(
    manifests: Map<string, Manifest>,
    memory: FleetMemory,
    signal: AbortSignal,
  ): Promise<void> {
    for (const [id, m] of manifests) {
      const mem = memory.operations[id];
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
}
