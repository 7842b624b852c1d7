/**
 * Processes one shard message end to end: parse it (./shard-message.ts), take the operation
 * from the cache (./operation-cache.ts), resume from the shard's checkpoint if there is one
 * (./shard-input.ts), run the remaining rows while a ShardRun checkpoints them
 * (./shard-run.ts), and commit `done.json` with a conditional put (first finisher wins).
 *
 * How an attempt ends (attempt causes: ./attempts.ts):
 * - all rows done → final chunk, conditional commit → `completed` (or `lost` if beaten);
 * - a checkpoint finds the shard committed by another worker → stop at once, commit nothing,
 *   `lost` ("shard committed by another worker"); the message is deleted;
 * - the shard's signal aborts with a ShardLostError (heartbeat: the message is someone else's
 *   now) → stop, write nothing more, `lost`;
 * - the shard's signal aborts for any other reason (spot notice, SIGTERM, forced stop) → the
 *   rows in flight are aborted, a final checkpoint of the finished prefix is flushed,
 *   `interrupted`; the caller then makes the message visible again;
 * - anything else (unreadable slice, plugin that fails to load, crashed worker thread, a bug)
 *   → the finished prefix is flushed (best effort), `error`. Error attempts of the shard are
 *   counted from the attempt records in S3: at the operation's `maxErrorAttempts` the shard is
 *   committed as failed (`done.json` with `failed`) and the outcome is `failed` (the caller
 *   deletes the message); below it, a ShardAttemptFailedError asks for a retry after a backoff.
 *
 * At the start of every attempt, earlier attempts still marked `running` whose worker is known
 * to be gone are relabelled `lost` (./attempt-records.ts).
 */

import { randomUUID } from "node:crypto";
import { untilAborted } from "../shared/async.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import type { EgressPolicy } from "../shared/egress.ts";
import { describeError, ShardfleetError, ShardLostError } from "../shared/errors.ts";
import { keys } from "../shared/keys.ts";
import type { Logger } from "../shared/logger.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import { type Manifest, specOf } from "../shared/schemas/operation.ts";
import { type Attempt, attemptSchema, type ShardMessage } from "../shared/schemas/shard.ts";
import { isTransientError } from "../shared/transient.ts";
import { AttemptRecords, liveAttempts } from "./attempt-records.ts";
import { COMMITTED_ELSEWHERE, causeOfStop, ShardAttemptFailedError } from "./attempts.ts";
import { resumeFrom } from "./checkpoint.ts";
import { OperationCache, type OperationEntry, type RunnerFactory } from "./operation-cache.ts";
import { retryOrCommitFailed } from "./poison-limit.ts";
import { commitDone } from "./result-chunks.ts";
import { loadCheckpoint, readSlice } from "./shard-input.ts";
import { parseShardMessage } from "./shard-message.ts";
import { ShardRun, WRITE_TIMEOUT_MS } from "./shard-run.ts";
import { createTaskRunner } from "./tasks/registry.ts";
import { oneLine } from "./tasks/task.ts";

/** Seconds a shard stopped by a transient storage or network fault waits before its retry. */
const TRANSIENT_RETRY_DELAY_S = 2;

export interface ShardProcessorDeps {
  store: ObjectStore;
  logger: Logger;
  /** Checkpoint timing and timestamps. @default systemClock */
  clock?: Clock;
  /** @default createTaskRunner with the operation's spec, headers and `options.pluginDir` */
  createRunner?: RunnerFactory;
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

export interface ShardOutcome {
  operationId: string;
  shardId: string;
  /**
   * `committed`: this attempt's done.json won. `lost`: another worker committed first (this
   * attempt stopped at a checkpoint or lost the commit race). `already-done`: done.json existed
   * before we started. `failed`: the shard reached the poison limit and was committed failed.
   */
  status: "committed" | "lost" | "already-done" | "failed";
  rows: number;
  errorRows: number;
  /** Rows this attempt ran (fewer than `rows` after a resume). */
  rowsProcessed: number;
  /** The cursor this attempt resumed from, when it resumed from a checkpoint. */
  resumedFrom?: number;
  /** Checkpoints written, and their total and largest write time in ms. */
  checkpoints: number;
  checkpointMs: number;
  maxCheckpointMs: number;
}

export interface ProcessContext {
  /**
   * Aborts the shard. With a ShardLostError reason: stop, write nothing more. With any other
   * reason: flush a final checkpoint. Either way commit nothing, reject with the reason.
   */
  signal: AbortSignal;
  /** The SQS message and its delivery count (attempt records; spotting dead attempts). */
  messageId?: string;
  receiveCount?: number;
}

export class ShardProcessor {
  readonly #store: ObjectStore;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #options: ShardProcessorOptions;
  readonly #flushTimeoutMs: number;
  readonly #budget: number;
  readonly #operations: OperationCache;
  readonly #attemptRecords: AttemptRecords;
  #closed = false;

  constructor(deps: ShardProcessorDeps, options: ShardProcessorOptions) {
    this.#store = deps.store;
    this.#logger = deps.logger;
    this.#clock = deps.clock ?? systemClock;
    this.#options = options;
    this.#flushTimeoutMs = options.flushTimeoutMs ?? 5000;
    this.#budget = options.checkpointBudget ?? 0.01;
    const createRunner: RunnerFactory =
      deps.createRunner ??
      ((manifest, logger) =>
        createTaskRunner(
          specOf(manifest).task,
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
      { maxCached: options.maxCachedOperations ?? 4 },
    );
    this.#attemptRecords = new AttemptRecords(
      { store: this.#store, clock: this.#clock },
      {
        instanceId: options.instanceId,
        staleAfterMs: Math.max(120_000, 2 * 1000 * (options.visibilityTimeoutSeconds ?? 60)),
      },
    );
  }

  /**
   * Processes one message body. Resolves once the shard is done: committed (by us or anyone)
   * or committed failed at the poison limit. Throws InvalidMessageError for a body that can
   * never succeed, ShardAttemptFailedError for an error attempt below the poison limit (retry
   * after its delay), the signal's reason when aborted, anything else for a failure worth an
   * immediate retry.
   */
  async process(body: string, ctx: ProcessContext): Promise<ShardOutcome> {
    if (this.#closed) throw new Error("shard processor is closed");
    const message = parseShardMessage(body);
    const { operationId, shardId } = message;
    const logger = this.#logger.child({ operationId, shardId });
    const { signal } = ctx;

    // A redelivery after a commit (or a straggler copy): nothing left to do.
    if (await this.#store.exists(keys.done(operationId, shardId), signal)) {
      logger.info("shard already committed; skipping");
      return this.#outcome(message, "already-done");
    }

    const now = new Date(this.#clock.now()).toISOString();
    const attempt: Attempt = {
      v: 1,
      attemptId: randomUUID(),
      operationId,
      shardId,
      instanceId: this.#options.instanceId,
      market: this.#options.market,
      startedAt: now,
      updatedAt: now,
      ...(ctx.messageId === undefined ? {} : { messageId: ctx.messageId }),
      rowsDone: 0,
      cause: "running",
    };
    liveAttempts.add(attempt.attemptId);
    try {
      await this.#attemptRecords.relabelLost(message, ctx, logger);
      await this.#store.putJson(
        keys.attempt(operationId, shardId, attempt.attemptId),
        attemptSchema,
        attempt,
        signal,
      );
      logger.info(
        {
          attemptId: attempt.attemptId,
          start: message.start,
          end: message.end,
          receiveCount: ctx.receiveCount,
        },
        "shard started",
      );
      const entry = this.#operations.acquire(operationId);
      try {
        return await this.#attempt(message, entry, attempt, ctx, logger);
      } finally {
        this.#operations.release(entry);
      }
    } finally {
      liveAttempts.delete(attempt.attemptId);
    }
  }

  /** Closes every cached runner. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#operations.close();
  }

  #outcome(
    message: ShardMessage,
    status: ShardOutcome["status"],
    extra: Partial<ShardOutcome> = {},
  ): ShardOutcome {
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

  async #attempt(
    message: ShardMessage,
    entry: OperationEntry,
    attempt: Attempt,
    ctx: ProcessContext,
    logger: Logger,
  ): Promise<ShardOutcome> {
    const { operationId, shardId, start } = message;
    const attemptKey = keys.attempt(operationId, shardId, attempt.attemptId);
    // Stops the rows: the caller's signal, or a checkpoint that found the shard committed.
    const stopRows = new AbortController();
    const rowSignal = AbortSignal.any([ctx.signal, stopRows.signal]);
    // Writes survive an interruption (the final checkpoint needs them), not a lost shard.
    const lost = new AbortController();
    const onAbort = () => {
      if (ctx.signal.reason instanceof ShardLostError) lost.abort(ctx.signal.reason);
    };
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    if (ctx.signal.aborted) onAbort();

    let run: ShardRun | undefined;
    let manifest: Manifest | undefined;
    try {
      const loaded = await untilAborted(entry.ready, rowSignal);
      manifest = loaded.manifest;
      const { runner } = loaded;
      const spec = specOf(manifest);
      const checkpoint = await loadCheckpoint(this.#store, message, rowSignal, logger);
      const { progress, ignored } = resumeFrom(checkpoint, message, runner.columns);
      if (ignored) logger.warn({ problem: ignored }, "ignoring an inconsistent checkpoint");
      const resumed = progress.cursor > start || progress.chunks.length > 0;
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
        rowSignal,
        progress.cursor,
      );
      run = new ShardRun(
        { store: this.#store, clock: this.#clock, logger },
        {
          message,
          attempt,
          progress,
          indices: slice.rows.map((r) => r.index),
          everyRows: spec.checkpoint.everyRows,
          everyMs: spec.checkpoint.everySeconds * 1000,
          budget: this.#budget,
          lostSignal: lost.signal,
          onCommittedElsewhere: () => stopRows.abort(new ShardLostError(COMMITTED_ELSEWHERE)),
        },
      );
      const shardRun = run;
      shardRun.start();
      const results = await runner.runRows(slice.rows, {
        signal: rowSignal,
        logger,
        onRowDone: (n) => {
          attempt.rowsDone += n;
        },
        onResults: (rows) => shardRun.record(rows),
      });
      if (results.length !== slice.rows.length) {
        throw new ShardfleetError(
          "INTERNAL",
          `task returned ${results.length} results for ${slice.rows.length} rows`,
        );
      }
      // Runners that do not report rows as they go (and to be sure): all of them now.
      shardRun.record(results);
      attempt.rowsDone = results.length;
      // Every row is done: an interruption now still commits (it is quicker than a checkpoint);
      // only a lost shard does not.
      const final = await shardRun.finish(
        AbortSignal.any([lost.signal, AbortSignal.timeout(WRITE_TIMEOUT_MS)]),
      );
      lost.signal.throwIfAborted();
      const won = await commitDone(
        { store: this.#store, clock: this.#clock },
        attempt,
        {
          rows: slice.total,
          errorRows: final.errorRows,
          columns: final.columns,
          chunks: final.chunks,
        },
        lost.signal,
      );
      const outcome = this.#outcome(message, won ? "committed" : "lost", {
        rows: slice.total,
        errorRows: final.errorRows,
        rowsProcessed: results.length,
        ...(resumed ? { resumedFrom: progress.cursor } : {}),
        ...shardRun.stats,
      });
      const summary = {
        rows: outcome.rows,
        errorRows: outcome.errorRows,
        rowsProcessed: outcome.rowsProcessed,
        resumedFrom: outcome.resumedFrom,
        chunks: final.chunks.length,
        checkpoints: outcome.checkpoints,
        checkpointMs: Math.round(outcome.checkpointMs),
        maxCheckpointMs: Math.round(outcome.maxCheckpointMs),
      };
      if (won) logger.info(summary, "shard committed");
      else logger.info(summary, "shard already committed by another worker");
      await this.#attemptRecords.end(
        attemptKey,
        attempt,
        won ? "completed" : "lost",
        won ? undefined : COMMITTED_ELSEWHERE,
        logger,
      );
      return outcome;
    } catch (err) {
      await run?.stop();
      if (run?.committedElsewhere) {
        await this.#attemptRecords.end(attemptKey, attempt, "lost", COMMITTED_ELSEWHERE, logger);
        return this.#outcome(message, "lost", {
          rowsProcessed: attempt.rowsDone,
          ...run.stats,
        });
      }
      const cause = causeOfStop(ctx.signal);
      if (cause === "lost") {
        logger.warn({ reason: describeError(ctx.signal.reason) }, "shard lost; stopping");
        await this.#attemptRecords.end(
          attemptKey,
          attempt,
          "lost",
          describeError(ctx.signal.reason),
          logger,
        );
        throw ctx.signal.reason;
      }
      await run?.flush(this.#flushTimeoutMs);
      if (cause === "interrupted") {
        logger.info(
          { cursor: run?.progress.cursor, reason: describeError(ctx.signal.reason) },
          "shard interrupted",
        );
        await this.#attemptRecords.end(attemptKey, attempt, "interrupted", undefined, logger);
        throw ctx.signal.reason;
      }
      const error = oneLine(describeError(err));
      if (isTransientError(err)) {
        // Storage or network trouble (the SDK's retries and our resumed reads gave up), not the
        // shard's fault: it ends like an interruption and never counts towards the poison limit.
        logger.warn({ err }, "shard stopped by a transient fault; released for a retry");
        await this.#attemptRecords.end(attemptKey, attempt, "interrupted", error, logger);
        throw new ShardAttemptFailedError(error, {
          cause: err,
          retryDelaySeconds: TRANSIENT_RETRY_DELAY_S,
          errorAttempts: 0,
        });
      }
      await this.#attemptRecords.end(attemptKey, attempt, "error", error, logger);
      const won = await retryOrCommitFailed(
        { store: this.#store, clock: this.#clock, attemptRecords: this.#attemptRecords },
        { message, manifest, attempt, err, error },
        logger,
      );
      return this.#outcome(message, won ? "failed" : "lost", {
        rows: message.end - message.start,
        errorRows: message.end - message.start,
      });
    } finally {
      ctx.signal.removeEventListener("abort", onAbort);
    }
  }
}
