/**
 * The operation lifecycle as one state machine, and the only writer of `manifest.json`.
 *
 *   queued → splitting → running → merging → succeeded | succeeded-with-failures | failed
 *   (any live state → failed; running ⇄ paused; live → cancelling → cancelled: the control
 *   routes, POST /operations/:id/cancel|pause|resume)
 *
 * The allowed moves are data (`LIFECYCLE_EVENTS`: each event, the states it may leave and the one
 * it enters). Every change is a compare-and-set on S3: the manifest is read with its ETag, the
 * event checked against the state found, and the new manifest written with `If-Match`; when
 * another writer came first (412) it is read again and decided again, a bounded number of times.
 * The answer is a value (`applied`, `not-allowed` from the state found, `gone`, `contended`), so
 * two writers racing (the scheduler and the fleet manager, or two schedulers) can never both
 * leave the same state, and a transition is never written over a state that did not allow it.
 *
 * "Waiting for capacity" is not a lifecycle state: it is the fleet manager's own record, shown in
 * the operation view (./operations.ts).
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Clock } from "../shared/clock.ts";
import { keys } from "../shared/keys.ts";
import type { Logger } from "../shared/logger.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import {
  type LifecycleStatus,
  lifecycleStatuses,
  type Manifest,
  manifestSchema,
  TERMINAL_STATUSES,
} from "../shared/schemas/operation.ts";

/** A lifecycle event: the states it may be applied in, and the state it leads to. */
export interface LifecycleTransition {
  readonly from: readonly LifecycleStatus[];
  readonly to: LifecycleStatus;
}

/** Every state an operation may be failed from (all but the terminal ones). */
const LIVE: readonly LifecycleStatus[] = lifecycleStatuses.filter((s) => !TERMINAL_STATUSES.has(s));

/** The transition table: the only moves `OperationLifecycle.apply` makes. */
export const LIFECYCLE_EVENTS = {
  /** The scheduler starts cutting the workbook into shards. */
  split: { from: ["queued"], to: "splitting" },
  /** Every shard slice is written and its message sent (with rows, shards, startedAt). */
  splitDone: { from: ["splitting"], to: "running" },
  /** Every shard is committed: the merger starts. */
  merge: { from: ["running"], to: "merging" },
  /** Merged without an error row. */
  succeed: { from: ["merging"], to: "succeeded" },
  /** Merged with error rows within the spec's tolerance. */
  succeedWithFailures: { from: ["merging"], to: "succeeded-with-failures" },
  /** Merged over the tolerance, or a split or merge failed for good. */
  fail: { from: LIVE, to: "failed" },
  /**
   * The fleet manager gives up on capacity (deadline, configuration, permission). Never once
   * merging: every shard is committed by then and no capacity is needed any more.
   */
  failForCapacity: { from: ["queued", "splitting", "running"], to: "failed" },
  /** Control (POST /operations/:id/pause): no new shard starts, running ones checkpoint. */
  pause: { from: ["running"], to: "paused" },
  resume: { from: ["paused"], to: "running" },
  /** Control (POST /operations/:id/cancel): allowed in every live state, the merge included. */
  cancel: { from: ["queued", "splitting", "running", "paused", "merging"], to: "cancelling" },
  /**
   * A split that ends after its operation was cancelled records its shards (rows, shards): the
   * partial output needs every input row, and the state stays `cancelling`.
   */
  splitCancelled: { from: ["cancelling"], to: "cancelling" },
  /** The partial output and the cost report are written. */
  cancelDone: { from: ["cancelling"], to: "cancelled" },
  /**
   * Control (POST /operations/:id/retry): the failed rows of a finished operation run again, as
   * the shards of a new retry (recorded in `retries`); it merges and ends again as any run does.
   */
  retry: { from: ["succeeded-with-failures", "failed"], to: "running" },
} as const satisfies Record<string, LifecycleTransition>;

export type LifecycleEvent = keyof typeof LIFECYCLE_EVENTS;

/**
 * Changes that keep the status (`OperationLifecycle.amend`): the states each may be made in.
 * `caps`: `PATCH /operations/:id`, while the operation is not finished.
 */
export const LIFECYCLE_AMENDMENTS = {
  caps: { in: LIVE },
  /** The scheduler recorded the shards of the open retry (its slices written, messages sent). */
  retryPlanned: { in: ["running", "paused", "cancelling"] },
} as const satisfies Record<string, { readonly in: readonly LifecycleStatus[] }>;

export type LifecycleAmendment = keyof typeof LIFECYCLE_AMENDMENTS;

export const LIFECYCLE_EVENT_NAMES = Object.keys(LIFECYCLE_EVENTS) as LifecycleEvent[];

/** The state a new operation starts in. */
export const INITIAL_STATUS = "queued" satisfies LifecycleStatus;

/** Whether `event` may be applied to an operation in `status`. */
export function allows(event: LifecycleEvent, status: LifecycleStatus): boolean {
  return (LIFECYCLE_EVENTS[event].from as readonly LifecycleStatus[]).includes(status);
}

/** Fields written together with a transition (never the status: that is the event's). */
export type ManifestPatch = Partial<
  Pick<
    Manifest,
    "rows" | "shards" | "startedAt" | "finishedAt" | "resumedAt" | "error" | "result" | "retries"
  >
>;

export type TransitionOutcome =
  /** Written: the operation left `from` for the event's state; `manifest` is what was written. */
  | { outcome: "applied"; from: LifecycleStatus; manifest: Manifest }
  /** Not written: the operation is in `from`, which the event may not leave. */
  | { outcome: "not-allowed"; from: LifecycleStatus; manifest: Manifest }
  /** No such operation (never created, or deleted). */
  | { outcome: "gone" }
  /** Other writers won every one of `attempts` rounds: try again later. */
  | { outcome: "contended"; attempts: number };

/** What the state machine needs of the object store (a port, so tests can interleave writers). */
export type ManifestStore = Pick<
  ObjectStore,
  "getJsonVersioned" | "putJsonIfMatch" | "putJsonIfAbsent"
>;

export interface OperationLifecycleDeps {
  store: ManifestStore;
  clock: Clock;
  logger: Logger;
}

export interface OperationLifecycleOptions {
  /** Read-decide-write rounds before `contended`. @default 8 */
  maxAttempts?: number;
}

export class OperationLifecycle {
  readonly #store: ManifestStore;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #maxAttempts: number;

  constructor(deps: OperationLifecycleDeps, options: OperationLifecycleOptions = {}) {
    this.#store = deps.store;
    this.#clock = deps.clock;
    this.#log = deps.logger;
    this.#maxAttempts = Math.max(1, options.maxAttempts ?? 8);
  }

  /**
   * Writes a new operation's manifest, in `queued`, only if none exists (`If-None-Match: *`).
   * Returns what was written; throws if the id is taken (ids are random: a bug, not a race).
   */
  async create(
    manifest: Omit<Manifest, "status" | "updatedAt">,
    signal?: AbortSignal,
  ): Promise<Manifest> {
    const next = manifestSchema.parse({
      ...manifest,
      status: INITIAL_STATUS,
      updatedAt: this.#iso(),
    });
    const created = await this.#store.putJsonIfAbsent(
      keys.manifest(next.id),
      manifestSchema,
      next,
      signal,
    );
    if (!created) {
      // A retried PUT whose first answer was lost meets its own object: that is ours.
      const found = await this.#store.getJsonVersioned(
        keys.manifest(next.id),
        manifestSchema,
        signal,
      );
      if (JSON.stringify(found?.value) !== JSON.stringify(next)) {
        throw new Error(`operation ${next.id} already exists`);
      }
    }
    return next;
  }

  /**
   * Applies `event` to the operation with `patch`, as a conditional write of its manifest.
   * Never throws for a state that does not allow the event: it says so (`not-allowed`).
   */
  async apply(
    operationId: string,
    event: LifecycleEvent,
    patch: ManifestPatch | ((current: Manifest) => ManifestPatch) = {},
    signal?: AbortSignal,
  ): Promise<TransitionOutcome> {
    const key = keys.manifest(operationId);
    const { to } = LIFECYCLE_EVENTS[event];
    /** What this call last tried to write: a 412 may hide that an earlier try of it landed. */
    let tried: { body: string; from: LifecycleStatus } | undefined;
    for (let attempt = 1; attempt <= this.#maxAttempts; attempt++) {
      const read = await this.#store.getJsonVersioned(key, manifestSchema, signal);
      if (!read) return { outcome: "gone" };
      const current = read.value;
      // The SDK retries a PUT whose answer was lost; the retry then fails its own If-Match.
      if (tried && JSON.stringify(current) === tried.body) {
        return this.#applied(operationId, event, attempt, { from: tried.from, current });
      }
      if (!allows(event, current.status)) {
        return { outcome: "not-allowed", from: current.status, manifest: current };
      }
      const next = manifestSchema.parse({
        ...current,
        // A function patch is decided on the manifest read (again after each 412).
        ...(typeof patch === "function" ? patch(current) : patch),
        status: to,
        updatedAt: this.#iso(),
      });
      const put = await this.#store.putJsonIfMatch(key, manifestSchema, next, read.etag, signal);
      if (put.outcome === "written") {
        return this.#applied(operationId, event, attempt, { from: current.status, current: next });
      }
      if (put.outcome === "gone") return { outcome: "gone" };
      tried = { body: JSON.stringify(next), from: current.status };
      // 409: a write overlapped ours and may itself have failed; let it settle before reading.
      if (put.conflict) await sleep(10 * attempt, undefined, { signal });
    }
    this.#log.warn({ operationId, event }, "lifecycle transition lost every round; try later");
    return { outcome: "contended", attempts: this.#maxAttempts };
  }

  /**
   * Applies a change that keeps the status (`LIFECYCLE_AMENDMENTS`), as the same compare-and-set
   * as `apply`: `not-allowed` names the state found when the amendment may not be made in it.
   * `change` gets the manifest read and returns the fields to write (re-run after each 412).
   */
  async amend(
    operationId: string,
    amendment: LifecycleAmendment,
    change: (current: Manifest) => Pick<Manifest, "caps"> | Pick<Manifest, "retries">,
    signal?: AbortSignal,
  ): Promise<TransitionOutcome> {
    const key = keys.manifest(operationId);
    const allowed: readonly LifecycleStatus[] = LIFECYCLE_AMENDMENTS[amendment].in;
    for (let attempt = 1; attempt <= this.#maxAttempts; attempt++) {
      const read = await this.#store.getJsonVersioned(key, manifestSchema, signal);
      if (!read) return { outcome: "gone" };
      const current = read.value;
      if (!allowed.includes(current.status)) {
        return { outcome: "not-allowed", from: current.status, manifest: current };
      }
      const next = manifestSchema.parse({
        ...current,
        ...change(current),
        status: current.status,
        updatedAt: this.#iso(),
      });
      const put = await this.#store.putJsonIfMatch(key, manifestSchema, next, read.etag, signal);
      if (put.outcome === "written") {
        this.#log.info({ operationId, amendment, attempt }, "operation amended");
        return { outcome: "applied", from: current.status, manifest: next };
      }
      if (put.outcome === "gone") return { outcome: "gone" };
      if (put.conflict) await sleep(10 * attempt, undefined, { signal });
    }
    return { outcome: "contended", attempts: this.#maxAttempts };
  }

  #applied(
    operationId: string,
    event: LifecycleEvent,
    attempt: number,
    result: { from: LifecycleStatus; current: Manifest },
  ): TransitionOutcome {
    this.#log.debug(
      { operationId, event, from: result.from, to: result.current.status, attempt },
      "lifecycle transition applied",
    );
    return { outcome: "applied", from: result.from, manifest: result.current };
  }

  #iso(): string {
    return new Date(this.#clock.now()).toISOString();
  }
}
