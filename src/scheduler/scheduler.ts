/**
 * The scheduler loop: drives each operation through its lifecycle.
 *
 *   queued → splitting → running → merging → succeeded | succeeded-with-failures | failed
 *
 * Every status change is an event of the operation state machine (./operation-lifecycle.ts),
 * applied as a conditional write: an operation another writer moved on meanwhile (the fleet
 * manager failed it, say) is left as that writer put it.
 *
 * Every pass lists the operations in S3 and acts on those not yet terminal, so a restarted
 * scheduler simply carries on: an interrupted split is run again (shard ids and ranges are a
 * pure function of the input and shard size, so it rewrites the same keys and re-sends the same
 * messages, which workers tolerate as duplicates), an interrupted merge is run again.
 *
 * Splits and merges run as background jobs, at most `maxConcurrentJobs` at once, so a long
 * split never delays noticing that another operation has finished.
 *
 * Lifecycle: idle → running (start) → draining (stop: abort jobs, wait for them) → stopped.
 */
import { mapLimit } from "../shared/async.ts";
import type { Clock } from "../shared/clock.ts";
import { describeError, RetryableError, ShardfleetError } from "../shared/errors.ts";
import { FinishedOperations } from "../shared/finished-operations.ts";
import type { Logger } from "../shared/logger.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import { PeriodicService, type ServiceState } from "../shared/periodic-service.ts";
import { commitDeadLettered } from "../shared/records/done-marker.ts";
import {
  currentShards,
  type Manifest,
  openRetry,
  TERMINAL_STATUSES,
} from "../shared/schemas/operation.ts";
import { type ShardMessage, shardMessageSchema } from "../shared/schemas/shard.ts";
import type { ShardQueue } from "../shared/shard-queue.ts";
import { isTransientError } from "../shared/transient.ts";
import { CommitWatch, type CommitWatchOptions } from "./commit-watch.ts";
import { DispatchRecords } from "./dispatch/dispatch-record.ts";
import { DEFAULT_BACKLOG_BOUND, Dispatcher } from "./dispatch/dispatcher.ts";
import type { BacklogBound } from "./dispatch/fair-order.ts";
import { mergeOperation } from "./merger.ts";
import {
  type LifecycleEvent,
  type ManifestPatch,
  OperationLifecycle,
} from "./operation-lifecycle.ts";
import { listOperationIds, loadManifest, ShardProgressReader } from "./operations.ts";
import { withRetryEnded } from "./retry/retry-plan.ts";
import { planRetry } from "./retry/retry-planner.ts";
import { splitOperation } from "./splitter.ts";
import { DEFAULT_WORKBOOK_LIMITS, type WorkbookLimits } from "./workbook/limits.ts";

export interface SchedulerDeps {
  store: ObjectStore;
  queue: ShardQueue;
  logger: Logger;
  clock: Clock;
  /**
   * Writes the operation's cost report when it finishes (succeeded or failed here). Operations
   * ended elsewhere (the fleet manager) get theirs on first read. @default undefined (none)
   */
  cost?: { compute(operationId: string, signal?: AbortSignal): Promise<unknown> };
  /**
   * The scheduler lease's tenure (./lease/leadership.ts): `check` throws once this process may
   * no longer act, so no pass starts after the lease is lost. @default undefined (no lease)
   */
  fence?: { check(): void };
  /**
   * The process's one set of finished operations, shared with its fleet manager, so a finished
   * manifest is read again (for a retry accepted elsewhere) once per recheck, not once per loop.
   * @default a set of its own
   */
  finished?: FinishedOperations;
}

export interface SchedulerOptions {
  workQueueUrl: string;
  /**
   * The dead-letter queue. When set, each pass drains it: a shard that kept failing until SQS
   * gave up on it is committed as failed (its rows become error rows), so its operation can
   * finish instead of waiting for ever. @default undefined (not drained)
   */
  dlqUrl?: string;
  /** Pause between passes. @default 500 */
  intervalMs?: number;
  /** Splits and merges running at once. @default 2 */
  maxConcurrentJobs?: number;
  /**
   * Times in a row a split or merge may fail on a transient error (throttling, 5xx, a dropped
   * connection) and be started again, 1 s doubling to 30 s apart, before its operation fails.
   * @default 6
   */
  jobRetries?: number;
  /** What an input workbook may cost the splitter. @default DEFAULT_WORKBOOK_LIMITS */
  workbookLimits?: WorkbookLimits;
  /** How many shards the work queue may hold (fair share). @default DEFAULT_BACKLOG_BOUND */
  backlog?: BacklogBound;
  /**
   * Watch the last few shards' commit markers so the merge starts soon after the last commit
   * (./commit-watch.ts), or `false` to wait for the next pass. @default {}
   */
  commitWatch?: CommitWatchOptions | false;
}

/** Backoff between retries of a split or merge that failed on a transient error. */
const JOB_RETRY_FIRST_MS = 1_000;
const JOB_RETRY_MAX_MS = 30_000;

export type SchedulerState = ServiceState;

type JobKind = "split" | "merge" | "cancel" | "retry";

/**
 * How long a cancel waits for workers to flush the checkpoints of shards they were running
 * before the partial output is merged without them (a worker killed meanwhile never reports).
 */
const CANCEL_FLUSH_GRACE_MS = 15_000;

export type FinalStatus = "succeeded" | "succeeded-with-failures" | "failed";

/** The outcome of a finished merge, from its error rate and the spec's tolerance. */
export function finalStatus(
  rows: number,
  errorRows: number,
  toleratedFailurePercent: number,
): FinalStatus {
  if (errorRows === 0) return "succeeded";
  const percent = rows === 0 ? 100 : (errorRows / rows) * 100;
  return percent <= toleratedFailurePercent ? "succeeded-with-failures" : "failed";
}

/** The lifecycle event that ends a merge with each outcome. */
const FINAL_EVENTS = {
  succeeded: "succeed",
  "succeeded-with-failures": "succeedWithFailures",
  failed: "fail",
} as const satisfies Record<FinalStatus, LifecycleEvent>;

export class Scheduler {
  readonly #store: ObjectStore;
  readonly #queue: ShardQueue;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #cost: SchedulerDeps["cost"];
  readonly #fence: SchedulerDeps["fence"];
  readonly #options: Required<Omit<SchedulerOptions, "dlqUrl" | "commitWatch">> & {
    dlqUrl?: string;
  };
  readonly #commitWatch: CommitWatch | undefined;
  /** The one way shard messages reach the work queue (fair share between operations). */
  readonly #dispatcher: Dispatcher;
  readonly #progress: ShardProgressReader;
  readonly #lifecycle: OperationLifecycle;
  /**
   * Operations known to be terminal: not read again by this process (until `revive`, or the
   * recheck a retry accepted elsewhere needs: ../shared/finished-operations.ts).
   */
  readonly #terminal: FinishedOperations;
  /** Manifests that failed to parse, reported once each. */
  readonly #unreadable = new Set<string>();
  readonly #jobs = new Map<string, Promise<void>>();
  /** Split/merge transient failures in a row per operation, and when it may be tried again. */
  readonly #jobFailures = new Map<string, { count: number; retryAt: number }>();
  readonly #service: PeriodicService;

  constructor(deps: SchedulerDeps, options: SchedulerOptions) {
    this.#store = deps.store;
    this.#queue = deps.queue;
    this.#logger = deps.logger;
    this.#clock = deps.clock;
    this.#cost = deps.cost;
    this.#fence = deps.fence;
    this.#terminal = deps.finished ?? new FinishedOperations({ clock: deps.clock });
    this.#options = {
      workQueueUrl: options.workQueueUrl,
      dlqUrl: options.dlqUrl,
      intervalMs: options.intervalMs ?? 500,
      maxConcurrentJobs: options.maxConcurrentJobs ?? 2,
      jobRetries: options.jobRetries ?? 6,
      workbookLimits: options.workbookLimits ?? DEFAULT_WORKBOOK_LIMITS,
      backlog: options.backlog ?? DEFAULT_BACKLOG_BOUND,
    };
    this.#dispatcher = new Dispatcher(
      {
        store: deps.store,
        queue: deps.queue,
        records: new DispatchRecords({ store: deps.store, clock: deps.clock }),
        logger: deps.logger,
        clock: deps.clock,
      },
      { workQueueUrl: options.workQueueUrl, bound: this.#options.backlog },
    );
    this.#progress = new ShardProgressReader({ store: deps.store });
    this.#commitWatch =
      options.commitWatch === false
        ? undefined
        : new CommitWatch(
            { store: deps.store, clock: deps.clock, logger: deps.logger },
            options.commitWatch,
          );
    this.#service = new PeriodicService(
      { clock: deps.clock, logger: deps.logger },
      {
        name: "scheduler",
        intervalMs: this.#options.intervalMs,
        // Aborted by the stop, jobs unwind; their operations resume on the next start.
        drain: async () => {
          await Promise.allSettled(this.#jobs.values());
        },
      },
      (signal) => this.tick(signal),
    );
    this.#lifecycle = new OperationLifecycle(deps);
  }

  get state(): SchedulerState {
    return this.#service.state;
  }

  /** Starts the loop. Its first pass rebuilds the view of every operation from S3. */
  start(): void {
    this.#service.start({ intervalMs: this.#options.intervalMs });
  }

  /**
   * Stops the loop and aborts running splits and merges; resolves once they have unwound.
   * Their operations keep their status in S3 and are resumed by the next start.
   */
  stop(): Promise<void> {
    return this.#service.stop();
  }

  /**
   * Runs the next pass now instead of after the pause: something worth acting on has just
   * happened in this process (an operation was queued). Called during a pass, the next pass
   * follows it at once. Without it, a submission waits up to `intervalMs` for the next pass.
   */
  wake(): void {
    this.#service.wake();
  }

  /**
   * Puts shard messages that must run again on the work queue, bodies unchanged (re-drives: a
   * dead-lettered shard of a paused operation, a lost shard, a retry). First dispatches go
   * through the fair order at each pass instead.
   */
  enqueueShards(messages: readonly ShardMessage[], signal?: AbortSignal): Promise<void> {
    return this.#dispatcher.enqueueShards(messages, signal);
  }

  /**
   * How many of an operation's shards were sent (`[0, n)`, its dispatch record's cursor), or
   * undefined when it has none; the rest were never sent (the sweep leaves them alone).
   */
  dispatched(operationId: string, signal?: AbortSignal): Promise<number | undefined> {
    return this.#dispatcher.dispatched(operationId, signal);
  }

  /**
   * An operation that had finished runs again (its failed rows were retried): read it from the
   * next pass on, which starts now.
   */
  revive(operationId: string): void {
    this.#terminal.delete(operationId);
    this.#service.wake();
  }

  /** One pass over every operation not yet terminal (public so tests can drive passes). */
  async tick(signal: AbortSignal = this.#service.signal): Promise<void> {
    this.#fence?.check();
    if (this.#options.dlqUrl) {
      // A DLQ problem must not stop operations from advancing.
      await this.#drainDlq(this.#options.dlqUrl, signal).catch((err: unknown) => {
        if (signal.aborted) throw err;
        this.#logger.error({ err }, "draining the dead-letter queue failed; retrying next pass");
      });
    }
    const listed = await listOperationIds(this.#store, signal);
    this.#terminal.retain(new Set(listed));
    const ids = listed
      .filter((id) => !this.#terminal.has(id))
      // Oldest first: operations are served in submission order.
      .reverse();
    // Every live operation takes part in the dispatch, also one whose split job runs.
    const live: Manifest[] = [];
    await mapLimit(ids, 8, async (id) => {
      try {
        const busy = this.#jobs.has(id);
        const manifest = await this.#load(id, signal);
        if (!manifest) return;
        // Settles a recheck this pass claimed: it runs again, so every loop reads it.
        if (!TERMINAL_STATUSES.has(manifest.status)) this.#terminal.delete(id);
        live.push(manifest);
        if (!busy) await this.#advance(manifest, signal);
      } catch (err) {
        if (signal.aborted) throw err;
        // One operation's trouble (a flaky read) must not hold up the others.
        this.#logger.error(
          { err, operationId: id },
          "could not advance operation; retrying next pass",
        );
      }
    });
    await this.#dispatch(live, signal);
  }

  /** Fills the work queue's backlog in the fair order (./dispatch/). */
  async #dispatch(live: Manifest[], signal: AbortSignal): Promise<void> {
    this.#fence?.check();
    try {
      const pass = await this.#dispatcher.pass(live, signal);
      if (Object.keys(pass.sent).length > 0) {
        this.#logger.info(
          {
            sent: pass.sent,
            queued: pass.queued,
            running: pass.running,
            drained: pass.drained,
            drainPerSecond: Math.round(pass.drainPerSecond * 10) / 10,
            room: pass.room,
          },
          "shards dispatched",
        );
      }
    } catch (err) {
      if (signal.aborted) throw err;
      this.#logger.error({ err }, "dispatching shards failed; retrying next pass");
    }
  }

  async #load(id: string, signal: AbortSignal): Promise<Manifest | undefined> {
    try {
      return await loadManifest(this.#store, id, signal);
    } catch (err) {
      if (signal.aborted) throw err;
      if (isTransientError(err)) {
        this.#logger.warn({ err, operationId: id }, "manifest read failed for now; next pass");
        return undefined;
      }
      if (!this.#unreadable.has(id)) {
        this.#unreadable.add(id);
        this.#logger.error({ err, operationId: id }, "manifest unreadable; operation skipped");
      }
      return undefined;
    }
  }

  async #advance(manifest: Manifest, signal: AbortSignal): Promise<void> {
    switch (manifest.status) {
      case "queued":
      case "splitting":
        this.#startJob("split", manifest);
        return;
      case "running": {
        // A retry asked for: its shards are planned first (./retry/retry-planner.ts).
        const retry = openRetry(manifest);
        if (retry && !retry.shards) {
          this.#startJob("retry", manifest);
          return;
        }
        const { done } = await this.#progress.read(manifest, { attempts: false, signal });
        // Every shard it waits for now (an open retry's, else the split's) committed.
        const pending = (currentShards(manifest) ?? [])
          .filter((s) => !done.has(s.id))
          .map((s) => s.id);
        if (pending.length === 0) this.#startJob("merge", manifest);
        // The last few: the merge starts when they commit, not at the pass after.
        else
          this.#commitWatch?.watch(manifest.id, pending, () => this.wake(), this.#service.signal);
        return;
      }
      case "merging":
        this.#startJob("merge", manifest);
        return;
      case "cancelling":
        await this.#advanceCancel(manifest, signal);
        return;
      default:
        if (TERMINAL_STATUSES.has(manifest.status)) this.#finished(manifest.id);
    }
  }

  /**
   * A cancelled operation: split first if it never was (its output lists every input row), then
   * once no shard is running any more (workers stop at the next row boundary and flush), or the
   * grace has passed, merge what was done.
   */
  async #advanceCancel(manifest: Manifest, signal: AbortSignal): Promise<void> {
    if (!manifest.shards) {
      this.#startJob("split", manifest);
      return;
    }
    const since = Date.parse(manifest.updatedAt);
    if (this.#clock.now() - since < CANCEL_FLUSH_GRACE_MS) {
      const { counts } = await this.#progress.read(manifest, { signal });
      if (counts.running > 0) return;
    }
    this.#startJob("cancel", manifest);
  }

  #finished(id: string): void {
    this.#terminal.add(id);
    this.#dispatcher.forget(id);
    this.#progress.forget(id);
    this.#jobFailures.delete(id);
  }

  #startJob(kind: JobKind, manifest: Manifest): void {
    if (this.#jobs.has(manifest.id) || this.#jobs.size >= this.#options.maxConcurrentJobs) return;
    const failures = this.#jobFailures.get(manifest.id);
    if (failures && failures.retryAt > this.#clock.now()) return;
    const signal = this.#service.signal;
    const log = this.#logger.child({ operationId: manifest.id });
    const job = (
      kind === "split"
        ? this.#split(manifest, log, signal)
        : kind === "merge"
          ? this.#merge(manifest, log, signal)
          : kind === "retry"
            ? this.#planRetry(manifest, log, signal)
            : this.#cancel(manifest, log, signal)
    )
      .then(() => {
        this.#jobFailures.delete(manifest.id);
      })
      .catch(async (err: unknown) => {
        if (signal.aborted) {
          log.info({ job: kind }, `${kind} interrupted by shutdown; resumed on next start`);
          return;
        }
        const count = (failures?.count ?? 0) + 1;
        if (isTransientError(err) && count <= this.#options.jobRetries) {
          const delay = Math.min(JOB_RETRY_FIRST_MS * 2 ** (count - 1), JOB_RETRY_MAX_MS);
          this.#jobFailures.set(manifest.id, { count, retryAt: this.#clock.now() + delay });
          log.warn(
            { err, job: kind, retry: count, of: this.#options.jobRetries, inMs: delay },
            `${kind} failed on a transient error; starting it again`,
          );
          return;
        }
        this.#jobFailures.delete(manifest.id);
        log.error({ err, job: kind }, `${kind} failed; operation failed`);
        await this.#fail(manifest, err, log);
      })
      .finally(() => this.#jobs.delete(manifest.id));
    this.#jobs.set(manifest.id, job);
  }

  /**
   * Applies a lifecycle event: the manifest as written, or undefined (logged) when the operation
   * is in a state the event may not leave (another writer moved it on) or is gone. Throws a
   * retryable error when other writers won every round, so the job is started again.
   */
  async #apply(
    id: string,
    event: LifecycleEvent,
    patch: ManifestPatch | ((current: Manifest) => ManifestPatch),
    log: Logger,
    signal?: AbortSignal,
  ): Promise<Manifest | undefined> {
    const result = await this.#lifecycle.apply(id, event, patch, signal);
    switch (result.outcome) {
      case "applied":
        return result.manifest;
      case "not-allowed":
        log.info(
          { event, status: result.from },
          `not applying ${event}: the operation is ${result.from}`,
        );
        if (TERMINAL_STATUSES.has(result.from)) this.#finished(id);
        return undefined;
      case "gone":
        log.warn({ event }, `not applying ${event}: the operation's manifest is gone`);
        return undefined;
      case "contended":
        throw new RetryableError(`${event}: the manifest kept changing (${result.attempts} tries)`);
    }
  }

  #now(): string {
    return new Date(this.#clock.now()).toISOString();
  }

  async #split(manifest: Manifest, log: Logger, signal: AbortSignal): Promise<void> {
    let current = manifest;
    if (current.status === "cancelling") {
      await this.#splitCancelled(current, log, signal);
      return;
    }
    if (current.status !== "splitting") {
      const started = await this.#apply(current.id, "split", {}, log, signal);
      if (!started) return;
      current = started;
    } else {
      log.info("resuming an interrupted split (after the slices it wrote, if any)");
    }
    log.info("splitting");
    // Shards go to the dispatcher as their slices land; it feeds the work queue fairly.
    const queue = await this.#dispatcher.splitterQueue(current.id, () => this.wake(), signal);
    const { rows, shards } = await splitOperation(
      { store: this.#store, queue, logger: log },
      {
        manifest: current,
        workQueueUrl: this.#options.workQueueUrl,
        signal,
        limits: this.#options.workbookLimits,
      },
    );
    // The fleet manager may have failed it meanwhile (no capacity): then this is not-allowed.
    const ran = await this.#apply(
      current.id,
      "splitDone",
      { rows, shards, startedAt: this.#now() },
      log,
      signal,
    );
    if (ran) {
      log.info({ rows, shards: shards.length, status: ran.status }, "split done");
      // Its next pass now, not a pause later: shards may have committed during the split.
      this.#service.wake();
    }
    // Cancelled during the split: record the shards all the same (the partial output needs them).
    else await this.#apply(current.id, "splitCancelled", { rows, shards }, log, signal);
  }

  /** A split for the partial output of an operation cancelled before its shards were recorded. */
  async #splitCancelled(manifest: Manifest, log: Logger, signal: AbortSignal): Promise<void> {
    log.info("splitting a cancelled operation for its partial output (nothing queued)");
    const { rows, shards } = await splitOperation(
      { store: this.#store, queue: this.#queue, logger: log },
      {
        manifest,
        workQueueUrl: this.#options.workQueueUrl,
        signal,
        limits: this.#options.workbookLimits,
        enqueue: false,
      },
    );
    await this.#apply(manifest.id, "splitCancelled", { rows, shards }, log, signal);
  }

  /** Plans the open retry: its shards' slices and messages, then the record of them. */
  async #planRetry(manifest: Manifest, log: Logger, signal: AbortSignal): Promise<void> {
    log.info({ retry: openRetry(manifest)?.number }, "planning the retry of failed rows");
    await planRetry(
      {
        store: this.#store,
        queue: this,
        lifecycle: this.#lifecycle,
        clock: this.#clock,
        logger: log,
      },
      manifest,
      signal,
    );
    // Its shards may all be committed already (or there are none): the next pass merges.
    this.#service.wake();
  }

  /** Merges what a cancelled operation did (the rest `cancelled`), then ends it, with its cost. */
  async #cancel(manifest: Manifest, log: Logger, signal: AbortSignal): Promise<void> {
    log.info("operation cancelled; merging its partial output");
    const result = await mergeOperation(
      { store: this.#store, logger: log },
      { manifest, signal, cancelled: true },
    );
    const ended = await this.#apply(
      manifest.id,
      "cancelDone",
      (found) => ({
        result: {
          key: result.key,
          rows: result.rows,
          errorRows: result.errorRows,
          columns: result.columns,
        },
        finishedAt: this.#now(),
        ...retriesEnded(found, "cancelled", this.#now(), result.errorRows),
      }),
      log,
      signal,
    );
    if (!ended) return;
    this.#finished(manifest.id);
    log.info({ rows: result.rows, errorRows: result.errorRows }, "operation cancelled");
    await this.#writeCost(manifest.id, log);
  }

  async #merge(manifest: Manifest, log: Logger, signal: AbortSignal): Promise<void> {
    let current = manifest;
    if (current.status !== "merging") {
      const started = await this.#apply(current.id, "merge", {}, log, signal);
      if (!started) return;
      current = started;
    }
    log.info("every shard committed; merging");
    const result = await mergeOperation(
      { store: this.#store, logger: log },
      { manifest: current, signal },
    );
    const status = finalStatus(result.rows, result.errorRows, current.spec.toleratedFailurePercent);
    const error =
      status === "failed"
        ? {
            code: "TASK_FAILED",
            message: `${result.errorRows} of ${result.rows} rows failed, over the tolerated ${current.spec.toleratedFailurePercent}%`,
          }
        : undefined;
    const ended = await this.#apply(
      current.id,
      FINAL_EVENTS[status],
      (found) => ({
        result: {
          key: result.key,
          rows: result.rows,
          errorRows: result.errorRows,
          columns: result.columns,
        },
        ...(error ? { error } : {}),
        finishedAt: this.#now(),
        ...retriesEnded(found, status, this.#now(), result.errorRows),
      }),
      log,
      signal,
    );
    if (!ended) return;
    this.#finished(current.id);
    log.info({ status, rows: result.rows, errorRows: result.errorRows }, `operation ${status}`);
    await this.#writeCost(current.id, log);
  }

  /** A cost report that cannot be written never fails the operation: GET computes it later. */
  async #writeCost(id: string, log: Logger): Promise<void> {
    if (!this.#cost) return;
    try {
      await this.#cost.compute(id);
    } catch (err) {
      log.warn({ err }, "could not write the cost report; it is computed when first asked for");
    }
  }

  /** Marks the operation failed with the error's code and message (unless it has ended). */
  async #fail(manifest: Manifest, err: unknown, log: Logger): Promise<void> {
    try {
      const failed = await this.#apply(
        manifest.id,
        "fail",
        (found) => ({
          error: {
            code: err instanceof ShardfleetError ? err.code : "INTERNAL",
            message: describeError(err),
          },
          finishedAt: this.#now(),
          ...retriesEnded(found, "failed", this.#now()),
        }),
        log,
      );
      if (!failed) return;
      this.#finished(manifest.id);
      await this.#writeCost(manifest.id, log);
    } catch (saveErr) {
      // Left as it was: the next pass retries the job, and fails it again if it fails again.
      log.error({ err: saveErr }, "could not record the operation's failure");
    }
  }

  /**
   * Commits every shard SQS has given up on as failed. The marker goes through the same
   * first-writer-wins put as a worker's commit, so a late worker success is never overwritten
   * and a late worker commit simply loses.
   */
  async #drainDlq(dlqUrl: string, signal: AbortSignal): Promise<void> {
    for (;;) {
      const messages = await this.#queue.receive(dlqUrl, {
        max: 10,
        waitSeconds: 0,
        visibilityTimeout: 30,
        signal,
      });
      if (messages.length === 0) return;
      for (const message of messages) {
        let parsed: ReturnType<typeof shardMessageSchema.safeParse>;
        try {
          parsed = shardMessageSchema.safeParse(JSON.parse(message.body));
        } catch {
          parsed = shardMessageSchema.safeParse(undefined);
        }
        if (!parsed.success) {
          // Not ours to judge: leave it for an operator, out of sight for an hour.
          this.#logger.warn(
            { messageId: message.messageId },
            "unparseable message in the DLQ left there",
          );
          await this.#queue.changeVisibility(dlqUrl, message.receiptHandle, 3600, signal);
          continue;
        }
        const shard = parsed.data;
        const manifest = await loadManifest(this.#store, shard.operationId, signal);
        const log = this.#logger.child({ operationId: shard.operationId, shardId: shard.shardId });
        if (manifest?.status === "paused") {
          // Released again and again while paused, it ran out of receives, not of tries: back
          // to the work queue, to run once the operation is resumed.
          await this.enqueueShards([shard], signal);
          log.info("shard of a paused operation dead-lettered; sent back to the work queue");
        } else if (manifest?.status === "cancelling") {
          // Its rows are `cancelled` in the partial output: nothing to commit.
          log.info("dead-lettered shard of a cancelled operation deleted");
        } else if (manifest && !TERMINAL_STATUSES.has(manifest.status)) {
          // Every live state, not only `running`: a shard dead-lettered while its operation
          // waits for capacity, splits or merges must still be committed, or it never ends.
          const committed = await commitDeadLettered(
            { store: this.#store, clock: this.#clock },
            shard,
            message.messageId,
            signal,
          );
          log.warn(
            { committed, status: manifest.status },
            committed
              ? "shard dead-lettered; committed as failed"
              : "shard dead-lettered after it was committed",
          );
        } else {
          log.warn(
            { status: manifest?.status ?? "unknown operation" },
            "dead-lettered shard of an ended or unknown operation deleted",
          );
        }
        await this.#queue.delete(dlqUrl, message.receiptHandle, signal);
      }
    }
  }
}

/** The patch that closes the open retry (if any) with the status the operation ends in. */
function retriesEnded(
  manifest: Manifest,
  status: FinalStatus | "cancelled",
  now: string,
  errorRows?: number,
): Pick<ManifestPatch, "retries"> {
  if (!openRetry(manifest)) return {};
  const retries = withRetryEnded(manifest.retries, status, now, errorRows);
  return retries ? { retries } : {};
}
