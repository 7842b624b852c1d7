/**
 * Processes one shard message end to end and says what should happen to the message, as a
 * value (./shard-outcome.ts): parse it (./shard-message.ts), start an attempt
 * (./attempt-records.ts), then the attempt in three steps:
 *   prepare  take the operation from the cache (./operation-cache.ts), load the shard's
 *            checkpoint (./checkpoint-record.ts) and the rest of its input slice
 *            (./shard-input.ts);
 *   run      run the remaining rows while a ShardRun checkpoints them (./shard-run.ts), then
 *            write the final chunk;
 *   commit   `done.json` with a conditional put, first finisher wins
 *            (src/shared/records/done-marker.ts).
 *
 * How an attempt ends (attempt causes: ./attempts.ts) and the message outcome:
 * - all rows done → final chunk, conditional commit → `completed` (or `lost` if beaten);
 *   delete;
 * - a checkpoint finds the shard committed by another worker (the run's signal) → stop at
 *   once, commit nothing, `lost` ("shard committed by another worker"); delete;
 * - the shard's signal aborts with a ShardLostError (heartbeat: the message is someone else's
 *   now) → stop, write nothing more, `lost`; abandon;
 * - the shard's signal aborts for any other reason (spot notice, SIGTERM, forced stop) → the
 *   rows in flight are aborted, a final checkpoint of the finished prefix is flushed,
 *   `interrupted`; release at once;
 * - the operation is paused or cancelled (its manifest, re-read by ./operation-cache.ts while
 *   its shards run, and before each starts) → the rows in flight are aborted (the next row
 *   boundary), the finished prefix is flushed, `interrupted`; cancelled: delete (its rows are
 *   `cancelled` in the partial output); paused: release after PAUSED_RELEASE_S
 *   (./operation-control.ts);
 * - a transient storage or network fault → flushed, `interrupted` (never poison); release
 *   after a short pause;
 * - the input slice does not exist while the operation is still queued or splitting (an early
 *   duplicate or re-driven message) → `interrupted` "not yet" (never poison); release after a
 *   pause that grows with the deliveries (./shard-input.ts);
 * - anything else (unreadable slice, plugin that fails to load, crashed worker thread, a bug)
 *   → the finished prefix is flushed (best effort), `error`. Error attempts of the shard are
 *   counted from the attempt records in S3 (./poison-limit.ts): at the operation's
 *   `maxErrorAttempts` the shard is committed as failed (`done.json` with `failed`); delete.
 *   Below it: release after a 2^n s backoff.
 * A body that can never succeed is dead-lettered before any S3 read or attempt record.
 */
import { untilAborted } from "../shared/async.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import type { EgressPolicy } from "../shared/egress.ts";
import { describeError, InvalidMessageError, ShardfleetError } from "../shared/errors.ts";
import { keys } from "../shared/keys.ts";
import type { Logger } from "../shared/logger.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import { commitDone, isCommitted } from "../shared/records/done-marker.ts";
import { currentTask, type Manifest, manifestSchema, specOf } from "../shared/schemas/operation.ts";
import type { ShardMessage } from "../shared/schemas/shard.ts";
import type { TaskSpec } from "../shared/schemas/tasks.ts";
import { SliceContexts } from "../shared/slices.ts";
import { isTransientError } from "../shared/transient.ts";
import { type AttemptRecord, AttemptRecords } from "./attempt-records.ts";
import { COMMITTED_ELSEWHERE, causeOfStop, staleAfterMs } from "./attempts.ts";
import { resumeFrom, type ShardProgress } from "./checkpoint.ts";
import { loadCheckpoint } from "./checkpoint-record.ts";
import { OperationCache, type OperationEntry, type RunnerFactory } from "./operation-cache.ts";
import { isControlStop, stopOutcome } from "./operation-control.ts";
import type { OutputContext, RenderInput } from "./output-segments.ts";
import { retryOrCommitFailed } from "./poison-limit.ts";
import { inputNotYet, readSlice, ShardInputMissingError } from "./shard-input.ts";
import { parseShardMessage } from "./shard-message.ts";
import { type MessageOutcome, type ShardResult, stoppedOutcome } from "./shard-outcome.ts";
import { ShardRun, type ShardRunResult, WRITE_TIMEOUT_MS } from "./shard-run.ts";
import { createTaskRunner } from "./tasks/registry.ts";
import { oneLine, type TaskRow, type TaskRunner } from "./tasks/task.ts";

/** Seconds a shard stopped by a transient storage or network fault waits before its retry. */
const TRANSIENT_RETRY_DELAY_S = 2;

/**
 * The task as the operation's caps shape it: `caps.concurrency` (PATCH /operations/:id) replaces
 * http-enrich's `concurrency`. Read when the operation is loaded on this worker.
 */
export function withCapsApplied(task: TaskSpec, manifest: Pick<Manifest, "caps">): TaskSpec {
  const concurrency = manifest.caps?.concurrency;
  if (concurrency === undefined || task.name !== "http-enrich") return task;
  return { name: task.name, options: { ...task.options, concurrency } };
}

export interface ShardProcessorDeps {
  store: ObjectStore;
  logger: Logger;
  /** Checkpoint timing and timestamps. @default systemClock */
  clock?: Clock;
  /** @default createTaskRunner with the operation's spec, headers and `options.pluginDir` */
  createRunner?: RunnerFactory;
  /**
   * The owner of this process's attempt records (its running attempts are never relabelled
   * lost). @default one of this processor's own, from `options`
   */
  attempts?: AttemptRecords;
}

export interface ShardProcessorOptions {
  instanceId: string;
  market: "spot" | "on-demand";
  /** Where `transform` plugins live. */
  pluginDir: string;
  /** Where tasks may connect (SHARDFLEET_EGRESS_ALLOW). @default PUBLIC_ONLY */
  egress?: EgressPolicy;
  /** Idle operations whose manifest and runner stay cached (pools, threads). @default 4 */
  maxCachedOperations?: number;
  /**
   * How often the manifest of an operation whose shards run is read again, to learn of a pause
   * or cancel. @default 2000
   */
  controlPollMs?: number;
  /**
   * The queue's visibility timeout. A `running` attempt of another instance that showed no
   * sign of life for twice as long (and at least two minutes) is relabelled `lost`. @default 60
   */
  visibilityTimeoutSeconds?: number;
  /** Deadline of the final checkpoint of an interrupted or failed attempt. @default 5000 */
  flushTimeoutMs?: number;
  /**
   * Largest share of the time that checkpoint writes may take: a row-count checkpoint waits
   * until the smoothed write time / budget has passed since the last one (never longer than
   * everySeconds). 1 turns the floor off in effect. @default 0.01
   */
  checkpointBudget?: number;
}

export interface ProcessContext {
  /**
   * Aborts the shard. With a ShardLostError reason: stop, write nothing more (abandon). With
   * any other reason: flush a final checkpoint (release). Either way commit nothing.
   */
  signal: AbortSignal;
  /** The SQS message and its delivery count (attempt records; spotting dead attempts). */
  messageId?: string;
  receiveCount?: number;
}

/** What the prepare step hands the run: the operation, where to resume, the rows to run. */
interface Prepared {
  manifest: Manifest;
  runner: TaskRunner;
  progress: ShardProgress;
  /** Whether the attempt resumes from a checkpoint. */
  resumed: boolean;
  rows: TaskRow[];
  /** Rows in the whole slice. */
  total: number;
  /** The splitter's notes of the rows to run, by row index (see inputRowSchema). */
  notes: ReadonlyMap<number, string>;
}

/** One attempt under way: what the failure path needs to end it. */
interface Running {
  message: ShardMessage;
  attempt: AttemptRecord;
  ctx: ProcessContext;
  /** Aborts only when the shard is lost: writes stop then (not on an interruption). */
  lost: AbortSignal;
  logger: Logger;
  manifest?: Manifest;
  run?: ShardRun;
  /** Aborts when the operation is paused or cancelled (reason: a ControlStop). */
  control?: AbortSignal;
}

export class ShardProcessor {
  readonly #store: ObjectStore;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #flushTimeoutMs: number;
  readonly #budget: number;
  readonly #operations: OperationCache;
  readonly #attempts: AttemptRecords;
  /** Each operation's slice context and shared strings, loaded once for all its shards. */
  readonly #sliceContexts: SliceContexts;
  /** Smoothed checkpoint write time of the last run that wrote one (the next run's start). */
  #writeMs: number | undefined;
  #closed = false;

  constructor(deps: ShardProcessorDeps, options: ShardProcessorOptions) {
    this.#store = deps.store;
    this.#sliceContexts = new SliceContexts({ store: deps.store });
    this.#logger = deps.logger;
    this.#clock = deps.clock ?? systemClock;
    this.#flushTimeoutMs = options.flushTimeoutMs ?? 5000;
    this.#budget = options.checkpointBudget ?? 0.01;
    const createRunner: RunnerFactory =
      deps.createRunner ??
      ((manifest, logger) =>
        createTaskRunner(
          // A retry's options when it has one (its shards load the operation after it).
          withCapsApplied(currentTask(manifest), manifest),
          {
            logger,
            pluginDir: options.pluginDir,
            clock: this.#clock,
            ...(options.egress ? { egress: options.egress } : {}),
            budgetPeers: { store: this.#store, instanceId: options.instanceId },
          },
          { headers: manifest.headers, operationId: manifest.id },
        ));
    this.#operations = new OperationCache(
      { store: this.#store, logger: this.#logger, clock: this.#clock, createRunner },
      {
        maxCached: options.maxCachedOperations ?? 4,
        ...(options.controlPollMs === undefined ? {} : { controlPollMs: options.controlPollMs }),
      },
    );
    this.#attempts =
      deps.attempts ??
      new AttemptRecords(
        { store: this.#store, clock: this.#clock },
        {
          instanceId: options.instanceId,
          market: options.market,
          staleAfterMs: staleAfterMs(options.visibilityTimeoutSeconds ?? 60),
        },
      );
  }

  /**
   * Processes one message body and resolves what should happen to the message. Rejects only
   * for the unexpected (the consumer then releases the message at once).
   */
  async process(body: string, ctx: ProcessContext): Promise<MessageOutcome> {
    if (this.#closed) throw new Error("shard processor is closed");
    let message: ShardMessage;
    try {
      message = parseShardMessage(body);
    } catch (err) {
      if (!(err instanceof InvalidMessageError)) throw err;
      return { kind: "dead-letter", reason: err.message, err };
    }
    const logger = this.#logger.child({
      operationId: message.operationId,
      shardId: message.shardId,
    });
    let attempt: AttemptRecord;
    try {
      // A redelivery after a commit (or a straggler copy): nothing left to do.
      if (await isCommitted(this.#store, message, ctx.signal)) {
        logger.info("shard already committed; skipping");
        return { kind: "delete", result: this.#result(message, "already-done") };
      }
      attempt = await this.#attempts.start(message, ctx, logger);
    } catch (err) {
      if (ctx.signal.aborted) return stoppedOutcome(ctx.signal);
      throw err;
    }
    logger.info(
      {
        attemptId: attempt.attemptId,
        start: message.start,
        end: message.end,
        receiveCount: ctx.receiveCount,
      },
      "shard started",
    );
    const entry = this.#operations.acquire(message.operationId, message.retry);
    try {
      return await this.#attempt(message, entry, attempt, ctx, logger);
    } finally {
      this.#operations.release(entry);
    }
  }

  /** Closes every cached runner. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#operations.close();
  }

  async #attempt(
    message: ShardMessage,
    entry: OperationEntry,
    attempt: AttemptRecord,
    ctx: ProcessContext,
    logger: Logger,
  ): Promise<MessageOutcome> {
    const lost = lostOnly(ctx.signal);
    const running: Running = { message, attempt, ctx, lost: lost.signal, logger };
    try {
      const prepared = await this.#prepare(message, entry, running);
      running.manifest = prepared.manifest;
      const run = this.#newRun(prepared, running);
      running.run = run;
      const ran = await this.#run(prepared, run, running);
      return await this.#commit(prepared, ran, running);
    } catch (err) {
      return await this.#stopped(err, running);
    } finally {
      this.#writeMs = running.run?.writeMs ?? this.#writeMs;
      lost.dispose();
    }
  }

  /** The operation, where the shard resumes and the rows still to run. */
  async #prepare(
    message: ShardMessage,
    entry: OperationEntry,
    running: Running,
  ): Promise<Prepared> {
    const { logger } = running;
    const signal = running.ctx.signal;
    const { manifest, runner } = await untilAborted(entry.ready, signal);
    // Paused or cancelled since it was cached: this shard does not start.
    await this.#operations.refresh(message.operationId, entry, signal);
    running.control = entry.control.signal;
    running.control.throwIfAborted();
    const checkpoint = await loadCheckpoint(this.#store, message, signal, logger);
    const { progress, ignored } = resumeFrom(checkpoint, message, runner.columns);
    if (ignored) logger.warn({ problem: ignored }, "ignoring an inconsistent checkpoint");
    await running.attempt.startAt(progress.cursor, signal);
    const resumed = progress.cursor > message.start || progress.chunks.length > 0;
    if (resumed) {
      logger.info(
        { cursor: progress.cursor, chunks: progress.chunks.length },
        "resuming from the checkpoint",
      );
    }
    const slice = await readSlice(
      this.#store,
      message,
      manifest.headers,
      signal,
      progress.cursor,
      this.#sliceContexts,
    );
    return {
      manifest,
      runner,
      progress,
      resumed,
      rows: slice.rows,
      total: slice.total,
      notes: slice.notes,
    };
  }

  #newRun(prepared: Prepared, running: Running): ShardRun {
    const { checkpoint } = specOf(prepared.manifest);
    return new ShardRun(
      { store: this.#store, clock: this.#clock, logger: running.logger },
      {
        message: running.message,
        attempt: running.attempt,
        progress: prepared.progress,
        indices: prepared.rows.map((r) => r.index),
        everyRows: checkpoint.everyRows,
        everyMs: checkpoint.everySeconds * 1000,
        budget: this.#budget,
        ...(this.#writeMs === undefined ? {} : { writeMs: this.#writeMs }),
        lostSignal: running.lost,
        output: outputContext(prepared, running.attempt.attemptId),
      },
    );
  }

  /** Runs the rows (stopped by the caller's signal or the run's) and writes the last chunk. */
  async #run(
    prepared: Prepared,
    run: ShardRun,
    { attempt, ctx, lost, logger, control }: Running,
  ): Promise<{ rowsProcessed: number; final: ShardRunResult }> {
    run.start();
    const results = await prepared.runner.runRows(prepared.rows, {
      signal: AbortSignal.any([ctx.signal, run.signal, ...(control ? [control] : [])]),
      logger,
      onRowDone: (n) => attempt.addRows(n),
      onResults: (rows) => run.record(rows),
    });
    if (results.length !== prepared.rows.length) {
      throw new ShardfleetError(
        "INTERNAL",
        `task returned ${results.length} results for ${prepared.rows.length} rows`,
      );
    }
    // Runners that do not report rows as they go (and to be sure): all of them now.
    run.record(results);
    attempt.setRows(results.length);
    // Every row is done: an interruption now still commits (it is quicker than a checkpoint);
    // only a lost shard does not.
    const final = await run.finish(AbortSignal.any([lost, AbortSignal.timeout(WRITE_TIMEOUT_MS)]));
    lost.throwIfAborted();
    return { rowsProcessed: results.length, final };
  }

  /** The conditional commit: this attempt's done.json, unless someone else's is there. */
  async #commit(
    prepared: Prepared,
    ran: { rowsProcessed: number; final: ShardRunResult },
    { message, attempt, lost, logger }: Running,
  ): Promise<MessageOutcome> {
    const { progress, stats } = ran.final;
    const won = await commitDone(
      { store: this.#store, clock: this.#clock },
      attempt.committer,
      {
        rows: prepared.total,
        errorRows: progress.errorRows,
        columns: progress.columns,
        chunks: progress.chunks,
        ...(progress.segments ? { segments: progress.segments } : {}),
      },
      lost,
    );
    const result = this.#result(message, won ? "committed" : "lost", {
      rows: prepared.total,
      errorRows: progress.errorRows,
      rowsProcessed: ran.rowsProcessed,
      ...(prepared.resumed ? { resumedFrom: prepared.progress.cursor } : {}),
      ...stats,
    });
    logger.info(
      {
        rows: result.rows,
        errorRows: result.errorRows,
        rowsProcessed: result.rowsProcessed,
        resumedFrom: result.resumedFrom,
        chunks: progress.chunks.length,
        checkpoints: result.checkpoints,
        checkpointMs: Math.round(result.checkpointMs),
        maxCheckpointMs: Math.round(result.maxCheckpointMs),
      },
      won ? "shard committed" : "shard already committed by another worker",
    );
    await (won ? attempt.end("completed") : attempt.end("lost", COMMITTED_ELSEWHERE));
    return { kind: "delete", result };
  }

  /** An attempt that did not commit: why it stopped decides its cause and the outcome. */
  async #stopped(err: unknown, running: Running): Promise<MessageOutcome> {
    const { message, attempt, ctx, logger, run } = running;
    await run?.stop();
    if (run?.signal.aborted) {
      await attempt.end("lost", COMMITTED_ELSEWHERE);
      const result = this.#result(message, "lost", {
        rowsProcessed: attempt.rowsDone,
        ...run.stats,
      });
      return { kind: "delete", result };
    }
    const control = running.control?.reason;
    if (!ctx.signal.aborted && running.control?.aborted && isControlStop(control)) {
      // Paused or cancelled: what finished is kept (the partial output, or the resume's start).
      await run?.flush(this.#flushTimeoutMs);
      logger.info(
        { cursor: run?.progress.cursor, status: control.status },
        `shard stopped: operation ${control.status}`,
      );
      await attempt.end("interrupted", `operation ${control.status}`);
      return stopOutcome(control);
    }
    const cause = causeOfStop(ctx.signal);
    if (cause === "lost") {
      const reason = describeError(ctx.signal.reason);
      logger.warn({ reason }, "shard lost; stopping");
      await attempt.end("lost", reason);
      return stoppedOutcome(ctx.signal);
    }
    await run?.flush(this.#flushTimeoutMs);
    if (cause === "interrupted") {
      logger.info(
        { cursor: run?.progress.cursor, reason: describeError(ctx.signal.reason) },
        "shard interrupted",
      );
      await attempt.end("interrupted");
      return stoppedOutcome(ctx.signal);
    }
    return this.#failed(err, running);
  }

  /** An attempt that failed on its own: retried after a backoff, or poison. */
  async #failed(err: unknown, running: Running): Promise<MessageOutcome> {
    const { message, attempt, manifest, logger } = running;
    const error = oneLine(describeError(err));
    if (isTransientError(err)) {
      // Storage or network trouble (the SDK's retries and our resumed reads gave up), not the
      // shard's fault: it ends like an interruption and never counts towards the poison limit.
      logger.warn({ err }, "shard stopped by a transient fault; released for a retry");
      await attempt.end("interrupted", error);
      return {
        kind: "release",
        afterSeconds: TRANSIENT_RETRY_DELAY_S,
        why: "failed",
        reason: error,
        errorAttempts: 0,
        err,
      };
    }
    const notYet = await this.#notYet(err, running);
    if (notYet) {
      logger.info(
        { retryInSeconds: notYet.afterSeconds, receiveCount: running.ctx.receiveCount },
        "shard input not written yet (operation still splitting); released for later",
      );
      await attempt.end("interrupted", `not yet: ${error}`);
      return {
        kind: "release",
        afterSeconds: notYet.afterSeconds,
        why: "interrupted",
        reason: `shard input not written yet: ${error}`,
      };
    }
    await attempt.end("error", error);
    const verdict = await retryOrCommitFailed(
      { store: this.#store, clock: this.#clock, attemptRecords: this.#attempts },
      { message, manifest, attempt: attempt.committer, err, error },
      logger,
    );
    if (verdict.kind === "retry") {
      return {
        kind: "release",
        afterSeconds: verdict.afterSeconds,
        why: "failed",
        reason: error,
        errorAttempts: verdict.errorAttempts,
        err,
      };
    }
    const rows = message.end - message.start;
    const result = this.#result(message, verdict.won ? "failed" : "lost", {
      rows,
      errorRows: rows,
    });
    return { kind: "delete", result };
  }

  /**
   * Whether a missing input slice is only "not yet": asks the manifest itself (the cached one
   * may be older than the split), and when it cannot be read says not yet only if the cached
   * one does.
   */
  async #notYet(err: unknown, running: Running): Promise<{ afterSeconds: number } | undefined> {
    if (!(err instanceof ShardInputMissingError)) return undefined;
    const { message, ctx, logger } = running;
    let status = running.manifest?.status;
    try {
      const fresh = await this.#store.getJson(
        keys.manifest(message.operationId),
        manifestSchema,
        AbortSignal.timeout(10_000),
      );
      status = fresh?.status;
    } catch (readErr) {
      logger.warn({ err: readErr }, "cannot read the operation's status; using the cached one");
    }
    return inputNotYet(status, ctx.receiveCount ?? 1);
  }

  #result(
    message: ShardMessage,
    status: ShardResult["status"],
    extra: Partial<ShardResult> = {},
  ): ShardResult {
    return {
      operationId: message.operationId,
      shardId: message.shardId,
      status,
      rows: 0,
      errorRows: 0,
      rowsProcessed: 0,
      checkpoints: 0,
      checkpointMs: 0,
      maxCheckpointMs: 0,
      ...extra,
    };
  }
}

/**
 * What the run needs to render its rows as output segments: every row's input cells in header
 * order, taken before the task runs (a task may not change what the output shows).
 */
function outputContext(prepared: Prepared, attemptId: string): OutputContext {
  const headers = prepared.manifest.headers;
  const inputs = new Map<number, RenderInput>();
  for (const row of prepared.rows) {
    const note = prepared.notes.get(row.index);
    const cells = row.cells ?? headers.map((header) => row.values[header] ?? null);
    inputs.set(row.index, note === undefined ? { cells } : { cells, note });
  }
  return { headers, inputs, attemptId };
}

/**
 * A signal that aborts only when `signal` aborts with a ShardLostError: writes survive an
 * interruption (the final checkpoint needs them), not a lost shard.
 */
function lostOnly(signal: AbortSignal): { signal: AbortSignal; dispose: () => void } {
  const lost = new AbortController();
  const onAbort = () => {
    if (causeOfStop(signal) === "lost") lost.abort(signal.reason);
  };
  signal.addEventListener("abort", onAbort, { once: true });
  if (signal.aborted) onAbort();
  return { signal: lost.signal, dispose: () => signal.removeEventListener("abort", onAbort) };
}
