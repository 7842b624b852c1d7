/**
 * The operation service: submits operations (intake → inspect → manifest) and reports them.
 *
 * S3 is the source of truth. The only memory kept here is a cache of things that never change
 * once written (commit markers, finished attempts, views of terminal operations), so a fresh
 * process rebuilds it simply by reading S3 again.
 */

import { randomBytes } from "node:crypto";
import type { Readable } from "node:stream";
import type { z } from "zod";
import { mapLimit, untilAborted } from "../shared/async.ts";
import { isAwsServiceError } from "../shared/aws-errors.ts";
import type { Clock } from "../shared/clock.ts";
import {
  capsPatchSchema,
  type OperationView,
  type RetryView,
  retryRequestSchema,
  type ShardCounts,
} from "../shared/contracts/operations.ts";
import {
  BadInputError,
  InvalidStateError,
  LimitExceededError,
  NotFoundError,
  NotReadyError,
  RetryableError,
  ShardfleetError,
} from "../shared/errors.ts";
import { keys, OPERATIONS_PREFIX, parseShardKey } from "../shared/keys.ts";
import type { Logger } from "../shared/logger.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import { type CapacityWait, type FleetRecord, fleetRecordSchema } from "../shared/schemas/fleet.ts";
import {
  currentTask,
  type LifecycleStatus,
  type Manifest,
  manifestSchema,
  type OperationSpec,
  type OperationStatus,
  parseOperationSpec,
  type RetryRecord,
  TERMINAL_STATUSES,
  tenantOf,
} from "../shared/schemas/operation.ts";
import { attemptSchema, type ShardDone, shardDoneSchema } from "../shared/schemas/shard.ts";
import { canSee, DEFAULT_TENANT, type Viewer } from "../shared/schemas/tokens.ts";
import { isTransientError } from "../shared/transient.ts";
import { priorityOf } from "./dispatch/dispatcher.ts";
import { receiveSubmission, type SubmissionPart, type UploadedInput } from "./intake.ts";
import { type ControlAction, type ControlOutcome, controlOperation } from "./operation-control.ts";
import { OperationLifecycle } from "./operation-lifecycle.ts";
import { retryOptions, runsOf, withNewRetry } from "./retry/retry-plan.ts";
import { SharedReads } from "./shared-reads.ts";
import { readSourceView } from "./source-view.ts";
import { checkSpecAlone, checkSpecColumns, type SpecCheckOptions } from "./spec-checks.ts";
import { objectByteSource } from "./workbook/byte-source.ts";
import { inspectWorkbook } from "./workbook/inspect.ts";
import {
  DEFAULT_WORKBOOK_LIMITS,
  knownResultColumns,
  type WorkbookLimits,
} from "./workbook/limits.ts";

/** What an operation id may look like (the same rule the key layout enforces). */
export const OPERATION_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;

/**
 * A new operation id: `op-` + creation time (base 36, fixed width) + randomness, so that id
 * order is creation order and "newest first" needs no manifest reads.
 */
export function newOperationId(nowMs: number): string {
  return `op-${nowMs.toString(36).padStart(9, "0")}-${randomBytes(5).toString("hex")}`;
}

/** Throws 400 for anything that cannot be an operation id (it would never be found anyway). */
export function checkOperationId(id: string): string {
  if (!OPERATION_ID_PATTERN.test(id)) {
    throw new BadInputError(
      "BAD_REQUEST",
      `${JSON.stringify(id)} is not a valid operation id (letters, digits, - and _)`,
    );
  }
  return id;
}

function iso(clock: Clock): string {
  return new Date(clock.now()).toISOString();
}

/** Reads a manifest; undefined when the operation does not exist (or is still being submitted). */
export async function loadManifest(
  store: ObjectStore,
  id: string,
  signal?: AbortSignal,
): Promise<Manifest | undefined> {
  return store.getJson(keys.manifest(id), manifestSchema, signal);
}

/** Operation ids present in the bucket, newest first (see `newOperationId`). */
export async function listOperationIds(
  store: ObjectStore,
  signal?: AbortSignal,
): Promise<string[]> {
  const prefixes = await store.listPrefixes(OPERATIONS_PREFIX, signal);
  return prefixes
    .map((p) => p.slice(OPERATIONS_PREFIX.length, -1))
    .filter((id) => OPERATION_ID_PATTERN.test(id))
    .sort()
    .reverse();
}

export interface ShardProgress {
  counts: ShardCounts;
  /** Commit markers by shard id (committed shards only). */
  done: Map<string, ShardDone>;
}

/**
 * Reads the state of an operation's shards from the records under its durable shards prefix:
 * done = a `done.json` without `failed`; failed = a `done.json` with `failed`; running = an
 * attempt whose cause is "running" and no `done.json`; pending = the rest. The four add up
 * to the manifest's shard count. A shard whose failed rows a retry runs again counts as its
 * latest run (the retry's shard, under its own id; `done` is keyed by that id).
 *
 * Caches commit markers and finished attempts: both are written once and never change.
 */
export class ShardProgressReader {
  readonly #store: ObjectStore;
  readonly #done = new Map<string, ShardDone>();
  readonly #finishedAttempts = new Set<string>();

  constructor(deps: { store: ObjectStore }) {
    this.#store = deps.store;
  }

  /** @param options.attempts read attempt records to count running shards. @default true */
  async read(
    manifest: Manifest,
    options: { attempts?: boolean; signal?: AbortSignal } = {},
  ): Promise<ShardProgress> {
    const shards = manifest.shards ?? [];
    const expected = new Set(shards.map((s) => runsOf(s, manifest.retries).at(-1)?.id ?? s.id));
    const keysUnder = await this.#store.list(keys.shardsPrefix(manifest.id), options.signal);
    const doneKeys: string[] = [];
    const attemptKeys = new Map<string, string[]>();
    for (const key of keysUnder) {
      const parsed = parseShardKey(key);
      if (!parsed || !expected.has(parsed.shardId)) continue;
      if (parsed.rest === "done.json") doneKeys.push(key);
      else if (parsed.rest.startsWith("attempts/")) {
        const list = attemptKeys.get(parsed.shardId) ?? [];
        list.push(key);
        attemptKeys.set(parsed.shardId, list);
      }
    }
    await mapLimit(
      doneKeys.filter((k) => !this.#done.has(k)),
      16,
      async (key) => {
        const marker = await this.#store.getJson(key, shardDoneSchema, options.signal);
        if (marker) this.#done.set(key, marker);
      },
    );
    const done = new Map<string, ShardDone>();
    for (const key of doneKeys) {
      const marker = this.#done.get(key);
      if (marker) done.set(parseShardKey(key)!.shardId, marker);
    }
    let running = 0;
    if (options.attempts ?? true) {
      const open = [...attemptKeys].filter(([shard]) => !done.has(shard));
      const flags = await mapLimit(open, 16, async ([, list]) => {
        for (const key of list) {
          if (this.#finishedAttempts.has(key)) continue;
          const attempt = await this.#store
            .getJson(key, attemptSchema, options.signal)
            .catch(() => undefined);
          if (attempt?.cause === "running") return true;
          if (attempt) this.#finishedAttempts.add(key);
        }
        return false;
      });
      running = flags.filter(Boolean).length;
    }
    let failed = 0;
    for (const marker of done.values()) if (marker.failed !== undefined) failed++;
    const counts: ShardCounts = {
      total: shards.length,
      done: done.size - failed,
      failed,
      running,
      pending: shards.length - done.size - running,
    };
    return { counts, done };
  }

  /** Drops what is cached for an operation (once its view is final, nothing reads it again). */
  forget(operationId: string): void {
    const prefix = keys.shardsPrefix(operationId);
    for (const key of this.#done.keys()) if (key.startsWith(prefix)) this.#done.delete(key);
    for (const key of this.#finishedAttempts) {
      if (key.startsWith(prefix)) this.#finishedAttempts.delete(key);
    }
  }
}

/** The lifecycle states in which the fleet manager's waiting-for-capacity condition is shown. */
const WAIT_SHOWN: ReadonlySet<LifecycleStatus> = new Set(["splitting", "running"]);

/**
 * The status an operation shows: its lifecycle state, or `waiting-for-capacity` (with since and
 * why) while the fleet manager's record says it waits and it is still splitting or running.
 */
export function shownStatus(
  manifest: Pick<Manifest, "status">,
  wait: CapacityWait | undefined,
): { status: OperationStatus; waiting?: CapacityWait } {
  return wait && WAIT_SHOWN.has(manifest.status)
    ? { status: "waiting-for-capacity", waiting: wait }
    : { status: manifest.status };
}

/** Whether the view of an operation in this state may show the fleet manager's wait. */
export function mayShowWait(status: LifecycleStatus): boolean {
  return WAIT_SHOWN.has(status);
}

/**
 * @param wait the fleet manager's waiting-for-capacity condition (its fleet record), if any.
 */
export function viewOf(
  manifest: Manifest,
  progress: ShardProgress,
  wait?: CapacityWait,
): OperationView {
  const shown = shownStatus(manifest, wait);
  let rowsDone = 0;
  let rowsFailed = 0;
  // A retry's shard holds only its shard's failed rows: the rest of the range was done before.
  const retryRange = new Map(
    (manifest.retries ?? []).flatMap((r) => (r.shards ?? []).map((s) => [s.id, s.end - s.start])),
  );
  for (const marker of progress.done.values()) {
    rowsDone += retryRange.get(marker.shardId) ?? marker.rows;
    rowsFailed += marker.errorRows;
  }
  if (manifest.result) {
    // Once merged, the result's counts are authoritative: the merge de-duplicates by row index.
    rowsDone = manifest.result.rows;
    rowsFailed = manifest.result.errorRows;
  }
  return {
    id: manifest.id,
    tenant: tenantOf(manifest),
    name: manifest.spec.name ?? null,
    status: shown.status,
    task: manifest.spec.task.name,
    rows: { total: manifest.rows ?? null, done: rowsDone, failed: rowsFailed },
    shards: progress.counts,
    createdAt: manifest.createdAt,
    startedAt: manifest.startedAt ?? null,
    finishedAt: manifest.finishedAt ?? null,
    priority: priorityOf(manifest),
    ...(manifest.error ? { error: manifest.error } : {}),
    ...(manifest.caps && Object.keys(manifest.caps).length > 0 ? { caps: manifest.caps } : {}),
    ...(manifest.retries && manifest.retries.length > 0
      ? { retries: manifest.retries.map(retryView) }
      : {}),
    ...(shown.waiting ? { waiting: shown.waiting } : {}),
    ...(manifest.result
      ? {
          result: {
            rows: manifest.result.rows,
            errorRows: manifest.result.errorRows,
            columns: manifest.result.columns,
          },
        }
      : {}),
  };
}

/** One retry as the view shows it (its shards as a count). */
function retryView(r: RetryRecord): RetryView {
  return {
    number: r.number,
    requestedAt: r.requestedAt,
    options: r.options,
    rows: r.rows ?? null,
    shards: r.shards?.length ?? null,
    endedAt: r.endedAt ?? null,
    status: r.status ?? null,
    errorRows: r.errorRows ?? null,
  };
}

/** A 400 naming the body field of a zod issue (an unknown key's own path). */
function bodyError(issue: z.core.$ZodIssue): BadInputError {
  const unknownKey = issue.code === "unrecognized_keys" ? issue.keys[0] : undefined;
  const path =
    [...issue.path, ...(unknownKey === undefined ? [] : [unknownKey])].map(String).join(".") ||
    "(body)";
  return new BadInputError(
    "BAD_REQUEST",
    `body ${path}: ${unknownKey === undefined ? issue.message : "unknown field"}`,
    { details: { path } },
  );
}

function notFound(id: string): NotFoundError {
  return new NotFoundError(`operation ${id} not found`, { details: { id } });
}

export interface OperationServiceDeps {
  store: ObjectStore;
  logger: Logger;
  clock: Clock;
  /**
   * Called once an operation's manifest is saved as queued, so the scheduler in the same process
   * can start its split at once (`Scheduler.wake`) instead of at its next pass. Must not throw.
   * @default undefined (the scheduler finds it at its next pass)
   */
  onQueued?: (operationId: string) => void;
  /**
   * Called once a finished operation was moved back to `running` by a retry, so the loops in the
   * same process read it again at once (`Scheduler.revive`, `FleetManager.revive`). Must not
   * throw. @default undefined (they notice at their recheck of finished operations)
   */
  onRetried?: (operationId: string) => void;
}

/**
 * How long the scheduler's API shares one status read of an operation among its pollers: console
 * pages, `watch`, scripts at 5 polls a second cost one read a second (a LIST of its shard records,
 * its running attempts, its fleet and budget-peer records).
 */
export const STATUS_SHARED_MS = 1000;

export interface OperationServiceOptions {
  /** Views of terminal operations kept in memory. @default 1000 */
  cacheSize?: number;
  /**
   * How long one read of an operation's status (`GET /operations/:id`, the events stream) answers
   * every other caller asking for the same operation: pollers share it, and see what other
   * writers (the scheduler's loops, workers) did up to this late. A change made through this
   * service is shown at once. The scheduler runs with `STATUS_SHARED_MS`.
   * @default 0 (every call reads)
   */
  statusTtlMs?: number;
  /** What a spec is checked against at intake (egress policy, plugin list). @default {} */
  specChecks?: SpecCheckOptions;
  /** What a submitted workbook may cost (checked at intake). @default DEFAULT_WORKBOOK_LIMITS */
  workbookLimits?: WorkbookLimits;
}

export interface ResultDownload {
  stream: Readable;
  filename: string;
}

/** Statuses whose result may be downloaded (when the merge produced one). */
const RESULT_STATUSES: ReadonlySet<OperationStatus> = new Set([
  "succeeded",
  "succeeded-with-failures",
  "failed",
  "cancelled",
]);

export class OperationService {
  readonly #store: ObjectStore;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #onQueued: ((operationId: string) => void) | undefined;
  readonly #onRetried: ((operationId: string) => void) | undefined;
  /** Submissions in flight, by tenant (for the operations cap). */
  readonly #reserved = new Map<string, number>();
  /** Operation ids seen finished: the operations cap never reads them again. */
  readonly #terminalTenants = new Set<string>();
  readonly #progress: ShardProgressReader;
  readonly #lifecycle: OperationLifecycle;
  readonly #terminalViews = new Map<string, OperationView>();
  readonly #cacheSize: number;
  readonly #specChecks: SpecCheckOptions;
  readonly #workbookLimits: WorkbookLimits;
  /** Status reads (view, fleet record, source), shared by every poller of an operation. */
  readonly #shown: SharedReads<{ view: OperationView; droppedEvents: number }>;
  /** Whose each polled operation is (its manifest's tenant), shared like the status read. */
  readonly #owners: SharedReads<string | undefined>;

  constructor(deps: OperationServiceDeps, options: OperationServiceOptions = {}) {
    this.#store = deps.store;
    this.#logger = deps.logger;
    this.#clock = deps.clock;
    this.#onQueued = deps.onQueued;
    this.#onRetried = deps.onRetried;
    this.#cacheSize = options.cacheSize ?? 1000;
    this.#specChecks = options.specChecks ?? {};
    this.#workbookLimits = options.workbookLimits ?? DEFAULT_WORKBOOK_LIMITS;
    this.#progress = new ShardProgressReader({ store: deps.store });
    this.#lifecycle = new OperationLifecycle(deps);
    this.#shown = new SharedReads({ ttlMs: options.statusTtlMs ?? 0 });
    this.#owners = new SharedReads({ ttlMs: options.statusTtlMs ?? 0 });
  }

  /**
   * Submits an operation from its multipart parts. The workbook is streamed to S3, then read
   * back to check its header row. On any rejection everything under the operation's prefixes
   * (durable and scratch) is deleted before the error is thrown, so a refused submission leaves
   * nothing behind.
   */
  async create(
    parts: AsyncIterable<SubmissionPart>,
    options: {
      maxUploadBytes: number;
      signal?: AbortSignal;
      /** Whose operation it is. @default "default" */
      tenant?: string;
      /**
       * The tenant's cap on unfinished operations: over it, refused (429) before the body is
       * read. @default no cap
       */
      maxOperations?: number;
    },
  ): Promise<Manifest> {
    const tenant = options.tenant ?? DEFAULT_TENANT;
    const id = newOperationId(this.#clock.now());
    const log = this.#logger.child({ operationId: id, tenant });
    // Counted before anything is read or stored; released once the manifest says it (or not).
    const reserved = (this.#reserved.get(tenant) ?? 0) + 1;
    this.#reserved.set(tenant, reserved);
    try {
      if (options.maxOperations !== undefined) {
        await this.#checkOperationCap(tenant, options.maxOperations, options.signal);
      }
      return await this.#create(id, tenant, parts, options, log);
    } finally {
      const left = (this.#reserved.get(tenant) ?? 1) - 1;
      if (left > 0) this.#reserved.set(tenant, left);
      else this.#reserved.delete(tenant);
    }
  }

  /**
   * Refuses (429) when the tenant's unfinished operations, plus the submissions in flight
   * (this one included), would exceed `cap`. In-flight ones are counted in memory so that two
   * submissions at once cannot both take the last place; one scheduler serves a bucket.
   */
  async #checkOperationCap(tenant: string, cap: number, signal?: AbortSignal): Promise<void> {
    const ids = await listOperationIds(this.#store, signal);
    let active = 0;
    await mapLimit(
      ids.filter((id) => !this.#terminalTenants.has(id)),
      16,
      async (id) => {
        const manifest = await loadManifest(this.#store, id, signal);
        if (!manifest) return;
        if (TERMINAL_STATUSES.has(manifest.status)) {
          this.#terminalTenants.add(id);
        } else if (tenantOf(manifest) === tenant) active++;
      },
    );
    const inFlight = this.#reserved.get(tenant) ?? 1;
    if (active + inFlight > cap) {
      throw new LimitExceededError(
        `tenant ${tenant} has ${active} unfinished operation(s)${inFlight > 1 ? ` and ${inFlight - 1} more being submitted` : ""}: its cap max-operations is ${cap}; submit again once one has finished`,
        { details: { tenant, cap, active } },
      );
    }
  }

  async #create(
    id: string,
    tenant: string,
    parts: AsyncIterable<SubmissionPart>,
    options: { maxUploadBytes: number; signal?: AbortSignal | undefined },
    log: Logger,
  ): Promise<Manifest> {
    let manifest: Manifest;
    try {
      const { spec, input } = await receiveSubmission({ store: this.#store }, parts, {
        operationId: id,
        maxUploadBytes: options.maxUploadBytes,
        signal: options.signal,
        checkSpec: (spec) => checkSpecAlone(spec, this.#specChecks),
      });
      const headers = await this.#inspect(input, spec, options.signal);
      checkSpecColumns(spec, headers);
      const now = iso(this.#clock);
      manifest = await this.#lifecycle.create(
        { v: 1, id, tenant, spec, input, headers, createdAt: now },
        options.signal,
      );
      log.info(
        {
          task: spec.task.name,
          filename: input.filename,
          bytes: input.bytes,
          columns: headers.length,
        },
        "operation queued",
      );
    } catch (err) {
      for (const prefix of keys.operationPrefixes(id)) {
        await this.#store.deletePrefix(prefix).catch((cleanupErr: unknown) => {
          log.error({ err: cleanupErr, prefix }, "could not delete a refused submission's objects");
        });
      }
      if (err instanceof ShardfleetError)
        log.info({ code: err.code }, `submission refused: ${err.message}`);
      throw err;
    }
    // Outside the try: the operation is accepted now, whatever the callback does.
    this.#onQueued?.(id);
    return manifest;
  }

  /** Checks the uploaded workbook (limits, header row, first data row) by ranged GETs. */
  async #inspect(
    input: UploadedInput,
    spec: OperationSpec,
    signal?: AbortSignal,
  ): Promise<string[]> {
    const source = await objectByteSource(this.#store, input.key, signal).catch((err: unknown) => {
      if (err instanceof NotFoundError) {
        throw new Error(`uploaded input ${input.key} vanished before it was read back`);
      }
      throw err;
    });
    try {
      const { headers } = await inspectWorkbook(source, {
        format: input.format,
        sheet: spec.sheet,
        csvValues: spec.csvValues,
        limits: this.#workbookLimits,
        resultColumns: knownResultColumns(spec.task),
        signal,
      });
      return headers;
    } catch (err) {
      // A reader that trips on a malformed file is the file's fault; S3 faults stay 500s.
      if (err instanceof ShardfleetError || isAwsServiceError(err) || isTransientError(err)) {
        throw err;
      }
      throw new BadInputError(
        "WORKBOOK_INVALID",
        `cannot read the workbook: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    } finally {
      await source.close();
    }
  }

  /**
   * The operation's view with its instances and fleet events; NotFoundError for an unknown id.
   * The fleet record is read at every status read (shared by callers for `statusTtlMs`), also
   * once finished: instances of a finished operation are still being scaled in after it ended.
   */
  async get(id: string, signal?: AbortSignal, viewer?: Viewer): Promise<OperationView> {
    return (await this.getWithFleet(id, signal, viewer)).view;
  }

  /**
   * The view, and how many fleet events its fleet record has dropped before `view.events[0]`
   * (so `droppedEvents + i` numbers fleet event i for good: the events stream's ids).
   */
  async getWithFleet(
    id: string,
    signal?: AbortSignal,
    viewer?: Viewer,
  ): Promise<{ view: OperationView; droppedEvents: number }> {
    checkOperationId(id);
    // Others may wait on a shared read: a caller that gives up stops waiting, the read goes on.
    const wait = <T>(read: Promise<T>) => (signal ? untilAborted(read, signal) : read);
    const now = this.#clock.now();
    // Who may see it first, from the manifest alone: another tenant's id costs what an unknown
    // id costs (one manifest read, nothing of its shards or fleet) and answers as one.
    // (A viewer who sees every tenant skips it.)
    if (viewer !== undefined && viewer.role !== "admin") {
      const owner = await wait(
        this.#owners.read(id, now, async () => {
          const cached = this.#terminalViews.get(id);
          if (cached) return cached.tenant;
          // A status read this second already knows (a failed one falls through to the manifest).
          const shown = this.#shown.peek(id, now);
          const known = shown && (await shown.then((s) => s.view.tenant).catch(() => undefined));
          if (known !== undefined) return known;
          const manifest = await loadManifest(this.#store, id);
          return manifest && tenantOf(manifest);
        }),
      );
      if (owner === undefined || !canSee(viewer, owner)) throw notFound(id);
    }
    // A status polled by many (console pages, `watch`, scripts) costs one read a `statusTtlMs`.
    const shown = await wait(this.#shown.read(id, now, () => this.#readWithFleet(id)));
    if (!canSee(viewer, shown.view.tenant)) throw notFound(id);
    return shown;
  }

  /** The view with its fleet record and source, as any viewer allowed to see it gets it. */
  async #readWithFleet(id: string): Promise<{ view: OperationView; droppedEvents: number }> {
    const fleet = this.#fleetReader(id);
    const view = await this.#get(id, undefined, undefined, fleet);
    const record = await fleet();
    const source =
      view.task === "http-enrich" && !TERMINAL_STATUSES.has(view.status)
        ? await readSourceView(this.#store, id, this.#clock.now())
        : [];
    return {
      view: this.#withFleet(view, record, source),
      droppedEvents: record?.droppedEvents ?? 0,
    };
  }

  #withFleet(
    view: OperationView,
    record: FleetRecord | undefined,
    source: OperationView["source"] & object,
  ): OperationView {
    return {
      ...view,
      instances: (record?.instances ?? []).map((i) => ({
        id: i.id,
        market: i.market,
        type: i.type,
        role: i.role,
        state: i.state,
        since: i.since,
        launchedAt: i.launchedAt,
        ...(i.endReason ? { endReason: i.endReason } : {}),
        ...(i.interruptionWarnedAt ? { interruptionWarnedAt: i.interruptionWarnedAt } : {}),
        ...(i.rebalanceRecommendedAt ? { rebalanceRecommendedAt: i.rebalanceRecommendedAt } : {}),
      })),
      events: record?.events ?? [],
      ...(source.length > 0 ? { source } : {}),
    };
  }

  /** Reads the operation's fleet record at most once, when first asked for. */
  #fleetReader(id: string, signal?: AbortSignal): () => Promise<FleetRecord | undefined> {
    let read: Promise<FleetRecord | undefined> | undefined;
    return () => {
      read ??= this.#store.getJson(keys.fleet(id), fleetRecordSchema, signal);
      return read;
    };
  }

  async #get(
    id: string,
    signal?: AbortSignal,
    viewer?: Viewer,
    fleet = this.#fleetReader(id, signal),
  ): Promise<OperationView> {
    checkOperationId(id);
    const cached = this.#terminalViews.get(id);
    if (cached) {
      if (!canSee(viewer, cached.tenant)) throw notFound(id);
      return cached;
    }
    const manifest = await this.#visibleManifest(id, signal, viewer);
    return this.#view(manifest, fleet, signal);
  }

  /**
   * The manifest, if the viewer may see it: another tenant's operation answers exactly as an
   * unknown id does, so ids tell nothing across tenants.
   */
  async #visibleManifest(id: string, signal?: AbortSignal, viewer?: Viewer): Promise<Manifest> {
    const manifest = await loadManifest(this.#store, id, signal);
    if (!manifest || !canSee(viewer, tenantOf(manifest))) throw notFound(id);
    return manifest;
  }

  /**
   * Throws NotFoundError, as for an unknown id, unless the viewer may see the operation (for
   * routes served by other services, such as the cost report).
   */
  async authorize(id: string, viewer: Viewer | undefined, signal?: AbortSignal): Promise<void> {
    // As every route under /operations/:id answers: 400 naming what cannot be an id.
    checkOperationId(id);
    const cached = this.#terminalViews.get(id);
    if (cached) {
      if (!canSee(viewer, cached.tenant)) throw notFound(id);
      return;
    }
    await this.#visibleManifest(id, signal, viewer);
  }

  /**
   * Cancels, pauses or resumes an operation the viewer may see (./operation-control.ts), and
   * answers with its view after the change. Another tenant's id is not found.
   */
  async control(
    id: string,
    action: ControlAction,
    viewer: Viewer | undefined,
    signal?: AbortSignal,
  ): Promise<{ outcome: ControlOutcome["outcome"]; view: OperationView }> {
    checkOperationId(id);
    await this.#visibleManifest(id, signal, viewer);
    const { outcome, status } = await controlOperation(
      this.#lifecycle,
      id,
      action,
      this.#clock.now(),
      signal,
    );
    this.#logger.info({ operationId: id, action, outcome, status }, `operation ${action}`);
    this.#shown.forget(id);
    return { outcome, view: await this.get(id, signal, viewer) };
  }

  /**
   * Operations newest first (only the viewer's tenant's, unless an admin), optionally only
   * those showing `status`, starting after the id `after` (the previous page's last). `more`:
   * ids remain beyond the page (the next page may still come back empty under a filter).
   */
  async list(options: {
    limit: number;
    status?: OperationStatus | undefined;
    after?: string | undefined;
    signal?: AbortSignal;
    viewer?: Viewer;
  }): Promise<{ operations: OperationView[]; more: boolean }> {
    const all = await listOperationIds(this.#store, options.signal);
    const { after } = options;
    // Newest first is descending id order: the next page holds the ids below the cursor's.
    const ids = after === undefined ? all : all.filter((id) => id < after);
    const out: OperationView[] = [];
    let lastIndex = -1;
    // Ids without a manifest are submissions in flight (or being refused): skip them.
    for (let i = 0; i < ids.length && out.length < options.limit; i += 8) {
      const batch = ids.slice(i, i + 8);
      const views = await mapLimit(batch, 8, (id) =>
        this.#get(id, options.signal, options.viewer).catch((err: unknown) => {
          if (err instanceof NotFoundError) return undefined;
          throw err;
        }),
      );
      for (const [j, v] of views.entries()) {
        if (!v || out.length >= options.limit) continue;
        if (options.status !== undefined && v.status !== options.status) continue;
        out.push(v);
        lastIndex = i + j;
      }
    }
    return { operations: out, more: out.length === options.limit && lastIndex < ids.length - 1 };
  }

  async #view(
    manifest: Manifest,
    fleet: () => Promise<FleetRecord | undefined>,
    signal?: AbortSignal,
  ): Promise<OperationView> {
    const progress = await this.#progress.read(manifest, { signal });
    // Only a splitting or running operation shows the fleet manager's wait: no read otherwise.
    const wait = mayShowWait(manifest.status) ? (await fleet())?.waiting : undefined;
    const view = viewOf(manifest, progress, wait);
    if (TERMINAL_STATUSES.has(manifest.status)) {
      this.#terminalViews.set(manifest.id, view);
      this.#progress.forget(manifest.id);
      if (this.#terminalViews.size > this.#cacheSize) {
        const oldest = this.#terminalViews.keys().next().value;
        if (oldest !== undefined) this.#terminalViews.delete(oldest);
      }
    }
    return view;
  }

  /**
   * Changes the operation's own caps (`PATCH /operations/:id`) through the state machine, and
   * returns its view. `body` is checked strictly: BadInputError (400) naming the field.
   * NotFoundError for an unknown id; NotReadyError (409) naming the status once it has finished.
   */
  async updateCaps(
    id: string,
    body: unknown,
    signal?: AbortSignal,
    viewer?: Viewer,
  ): Promise<OperationView> {
    checkOperationId(id);
    const parsed = capsPatchSchema.safeParse(body ?? {});
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const unknownKey = issue.code === "unrecognized_keys" ? issue.keys[0] : undefined;
      const path =
        [...issue.path, ...(unknownKey === undefined ? [] : [unknownKey])].map(String).join(".") ||
        "(body)";
      throw new BadInputError(
        "BAD_REQUEST",
        `body ${path}: ${unknownKey === undefined ? issue.message : "unknown field"}`,
        { details: { path } },
      );
    }
    await this.#visibleManifest(id, signal, viewer);
    const outcome = await this.#lifecycle.amend(
      id,
      "caps",
      (current) => ({ caps: { ...current.caps, ...parsed.data } }),
      signal,
    );
    if (outcome.outcome === "gone") throw notFound(id);
    if (outcome.outcome === "contended") {
      throw new RetryableError(`operation ${id} is being changed by another writer; try again`);
    }
    if (outcome.outcome === "not-allowed") {
      throw new NotReadyError(
        `operation ${id} is ${outcome.from}: caps can only be changed before it has finished`,
        { details: { id, status: outcome.from } },
      );
    }
    this.#logger.info({ operationId: id, caps: outcome.manifest.caps }, "operation caps changed");
    this.#shown.forget(id);
    return this.get(id, signal, viewer);
  }

  /**
   * Runs the failed rows of a finished operation again (`POST /operations/:id/retry`): the state
   * machine's `retry` event moves it from `succeeded-with-failures` or `failed` back to `running`
   * and opens a retry record (`retries`) with the task options it runs with — the current ones
   * with `body.options` on top, checked by the task's strict schema and the intake's spec checks
   * (BadInputError, 400, naming the field). The scheduler plans the retry's shards and merges
   * again. NotFoundError for an unknown (or another tenant's) id; InvalidStateError (409) naming
   * the status when it may not be retried; RetryableError when other writers kept winning.
   */
  async retry(
    id: string,
    body: unknown,
    signal?: AbortSignal,
    viewer?: Viewer,
  ): Promise<OperationView> {
    checkOperationId(id);
    const request = retryRequestSchema.safeParse(body ?? {});
    if (!request.success) throw bodyError(request.error.issues[0]!);
    const manifest = await this.#visibleManifest(id, signal, viewer);
    if (manifest.status === "failed" && !manifest.shards) {
      throw new InvalidStateError(
        `cannot retry operation ${id}: it failed before its split ended (${manifest.error?.message ?? "no shards"}); submit it again`,
        { details: { id, status: manifest.status } },
      );
    }
    const task = currentTask(manifest);
    const options = retryOptions(task.options, request.data.options);
    let spec: OperationSpec;
    try {
      spec = parseOperationSpec({ ...manifest.spec, task: { name: task.name, options } });
      await checkSpecAlone(spec, this.#specChecks);
      checkSpecColumns(spec, manifest.headers);
    } catch (err) {
      // The request names the options: say `body options.timeoutMs`, not `spec task.options…`.
      if (err instanceof BadInputError) {
        throw new BadInputError(
          err.code,
          err.message.replace(/^spec task\.options/, "body options"),
          {
            details: err.details,
            cause: err,
          },
        );
      }
      throw err;
    }
    const now = iso(this.#clock);
    const outcome = await this.#lifecycle.apply(
      id,
      "retry",
      (current) => ({
        retries: withNewRetry(current.retries, current.status, spec.task.options, now),
        // Written again by the retry's merge; a retry counts as a resume for capacity waits.
        result: undefined,
        error: undefined,
        finishedAt: undefined,
        resumedAt: now,
      }),
      signal,
    );
    if (outcome.outcome === "gone") throw notFound(id);
    if (outcome.outcome === "contended") {
      throw new RetryableError(`operation ${id} is being changed by another writer; try again`);
    }
    if (outcome.outcome === "not-allowed") {
      throw new InvalidStateError(
        `cannot retry operation ${id}: it is ${outcome.from} (only succeeded-with-failures or failed operations are retried)`,
        { details: { id, status: outcome.from, action: "retry" } },
      );
    }
    this.#terminalViews.delete(id);
    this.#terminalTenants.delete(id);
    this.#progress.forget(id);
    this.#shown.forget(id);
    const retry = outcome.manifest.retries?.at(-1);
    this.#logger.info(
      { operationId: id, retry: retry?.number, options: request.data.options ?? {} },
      "operation retry requested",
    );
    this.#onRetried?.(id);
    return this.get(id, signal, viewer);
  }

  /**
   * Deletes every object of a finished operation: its records, output, cost report and scratch,
   * listed by the operation's prefixes (`keys.operationPrefixes`). The manifest goes first, so
   * the operation is gone for every reader (the view, the list, the fleet manager's `existing`)
   * before the rest is cleared; the prefixes are then listed again until empty, catching a record
   * a late writer (the fleet manager's last scale-in pass) put back meanwhile.
   * NotFoundError for an unknown (or another tenant's) id; NotReadyError (409) while it runs.
   */
  async delete(id: string, signal?: AbortSignal, viewer?: Viewer): Promise<{ deleted: number }> {
    checkOperationId(id);
    const manifest = await this.#visibleManifest(id, signal, viewer);
    if (!TERMINAL_STATUSES.has(manifest.status)) {
      throw new NotReadyError(
        `operation ${id} is ${manifest.status}: only a finished operation can be deleted (cancel it first)`,
        { details: { id, status: manifest.status } },
      );
    }
    this.#terminalViews.delete(id);
    this.#progress.forget(id);
    this.#shown.forget(id);
    await this.#store.deletePrefix(keys.manifest(id), signal);
    let deleted = 1;
    for (let round = 0; round < 3; round++) {
      let found = 0;
      for (const prefix of keys.operationPrefixes(id)) {
        const left = await this.#store.list(prefix, signal);
        found += left.length;
        if (left.length > 0) await this.#store.deletePrefix(prefix, signal);
      }
      deleted += found;
      if (found === 0) break;
    }
    this.#logger.info({ operationId: id, objects: deleted }, "operation deleted");
    return { deleted };
  }

  /**
   * The result workbook as a stream. NotFoundError for an unknown id; NotReadyError (409),
   * naming the status, until the operation has a merged result.
   */
  async openResult(id: string, signal?: AbortSignal, viewer?: Viewer): Promise<ResultDownload> {
    checkOperationId(id);
    const manifest = await this.#visibleManifest(id, signal, viewer);
    if (!manifest.result || !RESULT_STATUSES.has(manifest.status)) {
      const why = manifest.error ? ` (${manifest.error.message})` : "";
      throw new NotReadyError(
        `operation ${id} is ${manifest.status}${why}: its result is available once it has finished`,
        { details: { id, status: manifest.status } },
      );
    }
    const stream = await this.#store.getStream(manifest.result.key, signal);
    if (!stream) {
      throw new NotFoundError(`the result of operation ${id} is gone (expired or deleted)`, {
        details: { id },
      });
    }
    return { stream, filename: `${id}-result.xlsx` };
  }
}
