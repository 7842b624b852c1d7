/**
 * Processes one shard message end to end: parse it, load the operation (manifest + task runner,
 * cached per operation), resume from the shard's checkpoint if there is one, run the remaining
 * rows while checkpointing, and commit `done.json` with a conditional put (first finisher wins).
 *
 * Checkpoints (scheme and soundness: ./checkpoint.ts): every `checkpoint.everyRows` finished
 * rows or `checkpoint.everySeconds`, whichever comes first, the contiguous prefix of finished
 * rows is written as a chunk (`keys.chunk`, named by its row range), then the checkpoint object
 * (cursor, chunk list, columns, error rows). Writes run beside the rows, never pausing them, one
 * at a time; each is timed (`checkpointMs` on the debug line "checkpoint written", totals on
 * "shard committed"). Each checkpoint (and each everySeconds without new rows) also checks
 * whether the shard is committed already: if so, this attempt stops at once, commits nothing,
 * is recorded `lost` ("shard committed by another worker") and the message is deleted. Every
 * 10 s the attempt record is rewritten with the rows done: its sign of life.
 *
 * How an attempt ends (attempt causes: ./attempts.ts):
 * - all rows done → final chunk, conditional commit → `completed` (or `lost` if beaten);
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
 * to be gone are relabelled `lost` (the dead cannot say so themselves; see `whyLost`).
 */

import { randomUUID } from "node:crypto";
import { createInterface } from "node:readline";
import { Readable } from "node:stream";
import { untilAborted } from "../shared/async.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import {
  describeError,
  InvalidMessageError,
  NotFoundError,
  ShardfleetError,
  ShardLostError,
} from "../shared/errors.ts";
import { keys } from "../shared/keys.ts";
import type { Logger } from "../shared/logger.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import {
  type Cell,
  decodeCell,
  inputRowSchema,
  type ResultRow,
  resultRowSchema,
} from "../shared/schemas/cells.ts";
import { type Manifest, manifestSchema, specOf } from "../shared/schemas/operation.ts";
import {
  type Attempt,
  attemptSchema,
  type Checkpoint,
  checkpointSchema,
  type ShardMessage,
  shardDoneSchema,
  shardMessageSchema,
} from "../shared/schemas/shard.ts";
import {
  COMMITTED_ELSEWHERE,
  causeOfStop,
  errorAttempts,
  retryDelaySeconds,
  ShardAttemptFailedError,
  whyLost,
} from "./attempts.ts";
import {
  checkpointFloorMs,
  type Piece,
  PrefixTracker,
  progressAfter,
  resumeFrom,
  type ShardProgress,
  smoothWriteMs,
} from "./checkpoint.ts";
import { createTaskRunner } from "./tasks/registry.ts";
import { oneLine, type TaskRow, type TaskRunner } from "./tasks/task.ts";

/** Parses a queue message body. Throws InvalidMessageError (→ DLQ) naming what is wrong. */
export function parseShardMessage(body: string): ShardMessage {
  let raw: unknown;
  try {
    raw = JSON.parse(body);
  } catch {
    throw new InvalidMessageError(`shard message is not JSON: ${body.slice(0, 80)}`);
  }
  const parsed = shardMessageSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.map(String).join(".") || "(root)";
    throw new InvalidMessageError(`shard message ${where}: ${issue.message}`, {
      details: { path: where },
    });
  }
  try {
    // The key layout is strict about ids; a message it refuses can never be processed.
    keys.shardPrefix(parsed.data.operationId, parsed.data.shardId);
  } catch (err) {
    throw new InvalidMessageError(`shard message: ${describeError(err)}`, { cause: err });
  }
  if (parsed.data.end < parsed.data.start) {
    throw new InvalidMessageError(
      `shard message: end ${parsed.data.end} is before start ${parsed.data.start}`,
    );
  }
  return parsed.data;
}

/** Builds the runner for an operation; injectable so tests can count or fake runners. */
export type RunnerFactory = (manifest: Manifest, logger: Logger) => Promise<TaskRunner>;

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

interface OperationEntry {
  ready: Promise<{ manifest: Manifest; runner: TaskRunner }>;
  users: number;
  lastUsed: number;
}

/** Attempts running in this process: never relabelled `lost` by a sibling. */
const liveAttempts = new Set<string>();

/** A running attempt refreshes its record at least this often (its sign of life). */
const ATTEMPT_REFRESH_MS = 10_000;
/** Chunks above this go through multipart upload; below, one PUT is cheaper. */
const SINGLE_PUT_MAX = 4 * 1024 * 1024;
/** Deadline of one checkpoint write (chunk + checkpoint + attempt). */
const WRITE_TIMEOUT_MS = 30_000;

/** Result columns: the task's declared ones, then any others in first-seen order. */
export function resultColumns(
  declared: readonly string[],
  results: readonly ResultRow[],
): string[] {
  const seen = new Set(declared);
  const columns = [...declared];
  for (const row of results) {
    for (const column of Object.keys(row.r ?? {})) {
      if (!seen.has(column)) {
        seen.add(column);
        columns.push(column);
      }
    }
  }
  return columns;
}

function ndjsonText(rows: readonly ResultRow[]): string {
  let text = "";
  for (const row of rows) text += `${JSON.stringify(resultRowSchema.parse(row))}\n`;
  return text;
}

interface ShardRunDeps {
  store: ObjectStore;
  clock: Clock;
  logger: Logger;
}

interface ShardRunOptions {
  message: ShardMessage;
  attempt: Attempt;
  progress: ShardProgress;
  /** Input row indices of the rows this attempt runs. */
  indices: readonly number[];
  everyRows: number;
  everyMs: number;
  /** Largest share of the time checkpoint writes may take (see ShardProcessorOptions). */
  budget: number;
  /** Aborts when the shard is lost: no write may happen after that. */
  lostSignal: AbortSignal;
  /** Called when a checkpoint finds the shard committed by someone else. */
  onCommittedElsewhere: () => void;
}

/**
 * One attempt's checkpointing: records finished rows, decides when to checkpoint (rows or
 * time), serialises the writes, flushes the final piece.
 */
class ShardRun {
  readonly #store: ObjectStore;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #o: ShardRunOptions;
  readonly #tracker: PrefixTracker;
  readonly #stopTicks = new AbortController();
  #progress: ShardProgress;
  #writing: Promise<void> | undefined;
  #again = false;
  #ticking: Promise<void> | undefined;
  #lastCheckpointAt: number;
  /** Last time-based look: a checkpoint, or at least the commit check. */
  #lastLookAt: number;
  #lastAttemptWriteAt: number;
  /** Smoothed checkpoint write time (ms), once there was one. */
  #writeMs: number | undefined;
  #deferred = false;
  committedElsewhere = false;
  readonly stats = { checkpoints: 0, checkpointMs: 0, maxCheckpointMs: 0 };

  constructor(deps: ShardRunDeps, options: ShardRunOptions) {
    this.#store = deps.store;
    this.#clock = deps.clock;
    this.#logger = deps.logger;
    this.#o = options;
    this.#progress = options.progress;
    this.#tracker = new PrefixTracker(options.indices, options.message.end);
    this.#lastCheckpointAt = this.#clock.now();
    this.#lastLookAt = this.#clock.now();
    this.#lastAttemptWriteAt = this.#clock.now();
  }

  get progress(): ShardProgress {
    return this.#progress;
  }

  /** Starts the time trigger. */
  start(): void {
    this.#ticking = this.#tick();
  }

  /** Rows just finished (in any order). */
  record(rows: readonly ResultRow[]): void {
    this.#tracker.record(rows);
    if (this.#tracker.pending < this.#o.everyRows || this.#stopTicks.signal.aborted) return;
    const wait = this.#lastCheckpointAt + this.#floorMs() - this.#clock.now();
    if (wait <= 0) {
      this.#request();
    } else if (!this.#deferred) {
      // Too soon after the last checkpoint for the write budget: come back when it is not.
      this.#deferred = true;
      this.#clock.sleep(wait, this.#stopTicks.signal).then(
        () => {
          this.#deferred = false;
          this.#request();
        },
        () => {},
      );
    }
  }

  /**
   * The shortest time between row-count checkpoints: the smoothed write time over the budget
   * (at 1 %, a 20 ms write allows one checkpoint every 2 s), never more than everySeconds.
   * Cheap rows then checkpoint less often than every everyRows, so checkpoint requests stay a
   * small, bounded share of the work; what a hard kill loses stays bounded in time.
   */
  #floorMs(): number {
    return checkpointFloorMs(this.#writeMs, this.#o.budget, this.#o.everyMs);
  }

  /**
   * Stops the time and row triggers and waits for the write under way. (Rows that still
   * finish are recorded, for `flush`, but start no write: a late write could land after the
   * attempt's final record and undo it.)
   */
  async stop(): Promise<void> {
    this.#stopTicks.abort();
    await this.#ticking;
    while (this.#writing) await this.#writing;
  }

  /**
   * After every row finished: writes the last piece (up to the shard end) as a chunk, or an
   * empty chunk for an empty shard, so the chunk list tiles the whole shard.
   */
  async finish(signal: AbortSignal): Promise<ShardProgress> {
    await this.stop();
    const { operationId, shardId, start, end } = this.#o.message;
    const piece = this.#tracker.peek(this.#progress.cursor);
    if (piece) {
      const key = keys.chunk(operationId, shardId, piece.start, piece.end);
      await this.#putChunk(key, piece.rows, signal);
      this.#tracker.advance(piece);
      this.#progress = progressAfter(this.#progress, piece, key);
    } else if (this.#progress.chunks.length === 0) {
      const key = keys.chunk(operationId, shardId, start, end);
      await this.#putChunk(key, [], signal);
      this.#progress = { ...this.#progress, cursor: end, chunks: [{ key, start, end }] };
    }
    return this.#progress;
  }

  /**
   * The final checkpoint of an attempt that stops early: the finished prefix, within
   * `timeoutMs`. Best effort (a failure only means those rows run again).
   */
  async flush(timeoutMs: number): Promise<void> {
    await this.stop();
    if (this.#o.lostSignal.aborted || this.committedElsewhere) return;
    const piece = this.#tracker.peek(this.#progress.cursor);
    if (!piece || piece.rows.length === 0) return;
    try {
      await this.#checkpoint(
        piece,
        AbortSignal.any([this.#o.lostSignal, AbortSignal.timeout(timeoutMs)]),
        false,
      );
      this.#logger.info({ cursor: this.#progress.cursor }, "final checkpoint written");
    } catch (err) {
      this.#logger.warn({ err }, "cannot write the final checkpoint; its rows will run again");
    }
  }

  /**
   * The time trigger. Every everySeconds: a checkpoint if rows finished, else at least the
   * commit check (a loser stuck on slow rows still stops soon); every ATTEMPT_REFRESH_MS the
   * attempt's sign of life.
   */
  async #tick(): Promise<void> {
    for (;;) {
      const due = Math.min(
        this.#lastLookAt + this.#o.everyMs,
        this.#lastAttemptWriteAt + ATTEMPT_REFRESH_MS,
      );
      try {
        await this.#clock.sleep(Math.max(10, due - this.#clock.now()), this.#stopTicks.signal);
      } catch {
        return;
      }
      if (this.#clock.now() >= due) this.#request();
    }
  }

  /** Asks for a write; one runs at a time, a request during it runs once it is done. */
  #request(): void {
    if (this.#stopTicks.signal.aborted || this.#o.lostSignal.aborted || this.committedElsewhere) {
      return;
    }
    if (this.#writing) {
      this.#again = true;
      return;
    }
    this.#writing = this.#writeLoop().finally(() => {
      this.#writing = undefined;
    });
  }

  async #writeLoop(): Promise<void> {
    do {
      this.#again = false;
      const signal = AbortSignal.any([this.#o.lostSignal, AbortSignal.timeout(WRITE_TIMEOUT_MS)]);
      try {
        await this.#checkpointOrRefresh(signal);
      } catch (err) {
        if (this.#o.lostSignal.aborted) return;
        // Not fatal: the rows stay in memory and go into the next checkpoint or the commit.
        this.#logger.warn({ err }, "checkpoint failed; retrying at the next one");
      }
    } while (
      this.#again &&
      !this.#stopTicks.signal.aborted &&
      !this.#o.lostSignal.aborted &&
      !this.committedElsewhere
    );
  }

  async #checkpointOrRefresh(signal: AbortSignal): Promise<void> {
    this.#lastLookAt = this.#clock.now();
    const piece = this.#tracker.peek(this.#progress.cursor);
    const now = this.#clock.now();
    const sinceLast = now - this.#lastCheckpointAt;
    if (
      piece &&
      piece.rows.length > 0 &&
      ((piece.rows.length >= this.#o.everyRows && sinceLast >= this.#floorMs()) ||
        sinceLast >= this.#o.everyMs)
    ) {
      await this.#checkpoint(piece, signal, true);
    } else if (!(await this.#committedElsewhere(signal)) && this.#attemptRefreshDue()) {
      await this.#writeAttempt(signal);
    }
  }

  /** True (and the attempt stopped) when another worker committed the shard. */
  async #committedElsewhere(signal: AbortSignal): Promise<boolean> {
    const { operationId, shardId } = this.#o.message;
    if (!(await this.#store.exists(keys.done(operationId, shardId), signal))) return false;
    this.committedElsewhere = true;
    this.#logger.info("shard committed by another worker; stopping this attempt");
    this.#o.onCommittedElsewhere();
    return true;
  }

  #attemptRefreshDue(): boolean {
    return this.#clock.now() - this.#lastAttemptWriteAt >= ATTEMPT_REFRESH_MS;
  }

  /**
   * Writes `piece` as a chunk, then the checkpoint (and, when due, the attempt's sign of
   * life). With `checkCommitted`, the commit check runs beside the chunk write (a chunk written
   * for a committed shard is harmless: same range, same key) and a committed shard stops here.
   */
  async #checkpoint(piece: Piece, signal: AbortSignal, checkCommitted: boolean): Promise<void> {
    const started = performance.now();
    const { operationId, shardId } = this.#o.message;
    const key = keys.chunk(operationId, shardId, piece.start, piece.end);
    const [committed] = await Promise.all([
      checkCommitted ? this.#committedElsewhere(signal) : false,
      this.#putChunk(key, piece.rows, signal),
    ]);
    if (committed) return;
    const next = progressAfter(this.#progress, piece, key);
    const checkpoint: Checkpoint = {
      v: 1,
      operationId,
      shardId,
      attemptId: this.#o.attempt.attemptId,
      cursor: next.cursor,
      chunks: next.chunks,
      columns: next.columns,
      errorRows: next.errorRows,
      updatedAt: new Date(this.#clock.now()).toISOString(),
    };
    await Promise.all([
      this.#store.putJson(
        keys.checkpoint(operationId, shardId),
        checkpointSchema,
        checkpoint,
        signal,
      ),
      this.#attemptRefreshDue() ? this.#writeAttempt(signal) : undefined,
    ]);
    this.#tracker.advance(piece);
    this.#progress = next;
    const ms = performance.now() - started;
    const now = this.#clock.now();
    this.stats.checkpoints++;
    this.stats.checkpointMs += ms;
    this.#writeMs = smoothWriteMs(this.#writeMs, ms);
    this.stats.maxCheckpointMs = Math.max(this.stats.maxCheckpointMs, ms);
    this.#logger.debug(
      {
        cursor: next.cursor,
        rows: piece.rows.length,
        checkpointMs: Math.round(ms * 10) / 10,
        sinceLastMs: now - this.#lastCheckpointAt,
      },
      "checkpoint written",
    );
    this.#lastCheckpointAt = now;
  }

  async #writeAttempt(signal: AbortSignal): Promise<void> {
    const { operationId, shardId } = this.#o.message;
    const attempt = this.#o.attempt;
    attempt.updatedAt = new Date(this.#clock.now()).toISOString();
    await this.#store.putJson(
      keys.attempt(operationId, shardId, attempt.attemptId),
      attemptSchema,
      attempt,
      signal,
    );
    this.#lastAttemptWriteAt = this.#clock.now();
  }

  async #putChunk(key: string, rows: readonly ResultRow[], signal: AbortSignal): Promise<void> {
    const text = ndjsonText(rows);
    // (An empty body goes through Upload too: the SDK warns about an empty PutObject body.)
    if (text.length > 0 && text.length < SINGLE_PUT_MAX) {
      await this.#store.putText(key, text, "application/x-ndjson", signal);
    } else {
      await this.#store.upload(key, Readable.from([Buffer.from(text)]), {
        contentType: "application/x-ndjson",
        signal,
      });
    }
  }
}

export class ShardProcessor {
  readonly #store: ObjectStore;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #createRunner: RunnerFactory;
  readonly #options: ShardProcessorOptions;
  readonly #maxCached: number;
  readonly #staleAfterMs: number;
  readonly #flushTimeoutMs: number;
  readonly #budget: number;
  readonly #operations = new Map<string, OperationEntry>();
  #closed = false;

  constructor(deps: ShardProcessorDeps, options: ShardProcessorOptions) {
    this.#store = deps.store;
    this.#logger = deps.logger;
    this.#clock = deps.clock ?? systemClock;
    this.#options = options;
    this.#maxCached = options.maxCachedOperations ?? 4;
    this.#staleAfterMs = Math.max(120_000, 2 * 1000 * (options.visibilityTimeoutSeconds ?? 60));
    this.#flushTimeoutMs = options.flushTimeoutMs ?? 5000;
    this.#budget = options.checkpointBudget ?? 0.01;
    this.#createRunner =
      deps.createRunner ??
      ((manifest, logger) =>
        createTaskRunner(
          specOf(manifest).task,
          { logger, pluginDir: options.pluginDir, clock: this.#clock },
          { headers: manifest.headers },
        ));
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
      await this.#relabelLost(message, ctx, logger);
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
      const entry = this.#acquire(operationId);
      try {
        return await this.#attempt(message, entry, attempt, ctx, logger);
      } finally {
        entry.users--;
        entry.lastUsed = this.#clock.now();
        this.#evictIdle();
      }
    } finally {
      liveAttempts.delete(attempt.attemptId);
    }
  }

  /** Closes every cached runner. */
  async close(): Promise<void> {
    this.#closed = true;
    const entries = [...this.#operations.values()];
    this.#operations.clear();
    await Promise.all(entries.map((e) => this.#closeEntry(e)));
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
      const checkpoint = await this.#loadCheckpoint(message, rowSignal, logger);
      const { progress, ignored } = resumeFrom(checkpoint, message, runner.columns);
      if (ignored) logger.warn({ problem: ignored }, "ignoring an inconsistent checkpoint");
      const resumed = progress.cursor > start || progress.chunks.length > 0;
      if (resumed) {
        logger.info(
          { cursor: progress.cursor, chunks: progress.chunks.length },
          "resuming from the checkpoint",
        );
      }
      const slice = await this.#readSlice(message, manifest.headers, rowSignal, progress.cursor);
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
      const won = await this.#store.putJsonIfAbsent(
        keys.done(operationId, shardId),
        shardDoneSchema,
        {
          v: 1,
          operationId,
          shardId,
          attemptId: attempt.attemptId,
          instanceId: this.#options.instanceId,
          rows: slice.total,
          errorRows: final.errorRows,
          columns: final.columns,
          chunks: final.chunks,
          committedAt: new Date(this.#clock.now()).toISOString(),
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
      await this.#endAttempt(
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
        await this.#endAttempt(attemptKey, attempt, "lost", COMMITTED_ELSEWHERE, logger);
        return this.#outcome(message, "lost", {
          rowsProcessed: attempt.rowsDone,
          ...run.stats,
        });
      }
      const cause = causeOfStop(ctx.signal);
      if (cause === "lost") {
        logger.warn({ reason: describeError(ctx.signal.reason) }, "shard lost; stopping");
        await this.#endAttempt(
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
        await this.#endAttempt(attemptKey, attempt, "interrupted", undefined, logger);
        throw ctx.signal.reason;
      }
      const error = oneLine(describeError(err));
      await this.#endAttempt(attemptKey, attempt, "error", error, logger);
      return await this.#afterError(message, manifest, attempt, err, error, logger);
    } finally {
      ctx.signal.removeEventListener("abort", onAbort);
    }
  }

  /**
   * Counts the shard's error attempts (this one included): at the limit, commits the shard as
   * failed; below it, throws ShardAttemptFailedError with a backoff for the retry.
   */
  async #afterError(
    message: ShardMessage,
    manifest: Manifest | undefined,
    attempt: Attempt,
    err: unknown,
    error: string,
    logger: Logger,
  ): Promise<ShardOutcome> {
    const { operationId, shardId, start, end } = message;
    let count = 1;
    let limit = 3;
    try {
      manifest ??= await this.#store.getJson(
        keys.manifest(operationId),
        manifestSchema,
        AbortSignal.timeout(10_000),
      );
      if (manifest) limit = specOf(manifest).maxErrorAttempts;
      count = errorAttempts(await this.#attempts(message, AbortSignal.timeout(10_000)));
    } catch (countErr) {
      logger.warn({ err: countErr }, "cannot count the shard's error attempts");
    }
    if (count < limit) {
      const delay = retryDelaySeconds(count);
      logger.warn(
        { err, errorAttempts: count, maxErrorAttempts: limit, retryInSeconds: delay },
        "shard attempt failed; it will be retried",
      );
      throw new ShardAttemptFailedError(error, {
        cause: err,
        retryDelaySeconds: delay,
        errorAttempts: count,
      });
    }
    const failed = `shard failed after ${count} error attempts: ${error}`;
    const won = await this.#store.putJsonIfAbsent(
      keys.done(operationId, shardId),
      shardDoneSchema,
      {
        v: 1,
        operationId,
        shardId,
        attemptId: attempt.attemptId,
        instanceId: this.#options.instanceId,
        rows: end - start,
        errorRows: end - start,
        columns: [],
        chunks: [],
        failed,
        committedAt: new Date(this.#clock.now()).toISOString(),
      },
      AbortSignal.timeout(10_000),
    );
    logger.error(
      { errorAttempts: count, maxErrorAttempts: limit, error, committed: won },
      won ? "poison shard: committed as failed" : "poison shard, but it was committed meanwhile",
    );
    return this.#outcome(message, won ? "failed" : "lost", {
      rows: end - start,
      errorRows: end - start,
    });
  }

  /** Every attempt record of the shard (unreadable ones skipped). */
  async #attempts(message: ShardMessage, signal: AbortSignal): Promise<Attempt[]> {
    const attemptKeys = await this.#store.list(
      keys.attemptsPrefix(message.operationId, message.shardId),
      signal,
    );
    const attempts = await Promise.all(
      attemptKeys.map((key) =>
        this.#store.getJson(key, attemptSchema, signal).catch(() => undefined),
      ),
    );
    return attempts.filter((a): a is Attempt => a !== undefined);
  }

  /** Relabels `running` attempts whose worker is known to be gone as `lost` (best effort). */
  async #relabelLost(message: ShardMessage, ctx: ProcessContext, logger: Logger): Promise<void> {
    try {
      const attempts = await this.#attempts(message, ctx.signal);
      const now = this.#clock.now();
      for (const attempt of attempts) {
        const why = whyLost(attempt, {
          now,
          instanceId: this.#options.instanceId,
          live: liveAttempts,
          messageId: ctx.messageId,
          receiveCount: ctx.receiveCount,
          staleAfterMs: this.#staleAfterMs,
        });
        if (why === undefined) continue;
        await this.#store.putJson(
          keys.attempt(message.operationId, message.shardId, attempt.attemptId),
          attemptSchema,
          {
            ...attempt,
            cause: "lost",
            endedAt: new Date(now).toISOString(),
            error: `relabelled by ${this.#options.instanceId}: ${why}`,
          },
          ctx.signal,
        );
        logger.info(
          { attemptId: attempt.attemptId, instanceId: attempt.instanceId, why },
          "earlier attempt relabelled lost",
        );
      }
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      logger.warn({ err }, "cannot check the shard's earlier attempts");
    }
  }

  /** The shard's checkpoint, or undefined (none, or unreadable: then the shard starts over). */
  async #loadCheckpoint(
    message: ShardMessage,
    signal: AbortSignal,
    logger: Logger,
  ): Promise<Checkpoint | undefined> {
    try {
      return await this.#store.getJson(
        keys.checkpoint(message.operationId, message.shardId),
        checkpointSchema,
        signal,
      );
    } catch (err) {
      if (signal.aborted) throw err;
      if (err instanceof SyntaxError || (err as { name?: unknown }).name === "ZodError") {
        logger.warn({ err }, "ignoring an unreadable checkpoint");
        return undefined;
      }
      throw err;
    }
  }

  /** Best effort: the attempt record is for people and the scheduler, never worth a retry. */
  async #endAttempt(
    key: string,
    attempt: Attempt,
    cause: Attempt["cause"],
    error: string | undefined,
    logger: Logger,
  ): Promise<void> {
    const now = new Date(this.#clock.now()).toISOString();
    const ended: Attempt = {
      ...attempt,
      cause,
      endedAt: now,
      updatedAt: now,
      ...(error === undefined ? {} : { error }),
    };
    try {
      // Its own short deadline: the shard's signal may be the reason we are here.
      await this.#store.putJson(key, attemptSchema, ended, AbortSignal.timeout(10_000));
    } catch (err) {
      logger.warn({ err, attemptId: attempt.attemptId }, "cannot write the attempt record");
    }
  }

  /**
   * The shard's input rows from `cursor` on, cells decoded and keyed by header, and the number
   * of rows in the whole slice. Rows before the cursor are only counted, never decoded or run.
   */
  async #readSlice(
    message: ShardMessage,
    headers: string[],
    signal: AbortSignal,
    cursor: number,
  ): Promise<{ rows: TaskRow[]; total: number }> {
    const { operationId, shardId, start, end } = message;
    const key = keys.shardInput(operationId, shardId);
    const stream = await this.#store.getStream(key, signal);
    if (!stream) throw new NotFoundError(`shard input ${key} does not exist`);
    const rows: TaskRow[] = [];
    let total = 0;
    let line = 0;
    for await (const text of createInterface({ input: stream, crlfDelay: Infinity })) {
      line++;
      if (text.trim() === "") continue;
      let parsed: ReturnType<typeof inputRowSchema.safeParse>;
      try {
        parsed = inputRowSchema.safeParse(JSON.parse(text));
      } catch {
        throw new ShardfleetError("INTERNAL", `shard input ${key} line ${line} is not JSON`);
      }
      if (!parsed.success) {
        throw new ShardfleetError(
          "INTERNAL",
          `shard input ${key} line ${line}: ${parsed.error.issues[0]?.message}`,
        );
      }
      const { i, c } = parsed.data;
      if (i < start || i >= end) {
        throw new ShardfleetError(
          "INTERNAL",
          `shard input ${key} line ${line}: row ${i} is outside the shard [${start}, ${end})`,
        );
      }
      total++;
      if (i < cursor) continue;
      const values: Record<string, Cell> = {};
      headers.forEach((header, at) => {
        const cell = c[at];
        values[header] = cell === undefined ? null : decodeCell(cell);
      });
      rows.push({ index: i, values });
    }
    return { rows, total };
  }

  #acquire(operationId: string): OperationEntry {
    let entry = this.#operations.get(operationId);
    if (!entry) {
      const created: OperationEntry = {
        ready: this.#load(operationId),
        users: 0,
        lastUsed: this.#clock.now(),
      };
      // A failed load is not cached: the next delivery tries again.
      created.ready.catch(() => {
        if (this.#operations.get(operationId) === created) this.#operations.delete(operationId);
      });
      this.#operations.set(operationId, created);
      entry = created;
    }
    entry.users++;
    return entry;
  }

  async #load(operationId: string): Promise<{ manifest: Manifest; runner: TaskRunner }> {
    const logger = this.#logger.child({ operationId });
    const manifest = await this.#store.getJson(
      keys.manifest(operationId),
      manifestSchema,
      AbortSignal.timeout(30_000),
    );
    if (!manifest) throw new NotFoundError(`operation ${operationId} has no manifest`);
    const runner = await this.#createRunner(manifest, logger);
    logger.info({ task: manifest.spec.task.name, columns: runner.columns }, "operation loaded");
    return { manifest, runner };
  }

  /** Drops the least recently used idle operations beyond the cache size. */
  #evictIdle(): void {
    if (this.#operations.size <= this.#maxCached) return;
    const idle = [...this.#operations.entries()]
      .filter(([, e]) => e.users === 0)
      .sort(([, a], [, b]) => a.lastUsed - b.lastUsed);
    for (const [id, entry] of idle) {
      if (this.#operations.size <= this.#maxCached) break;
      this.#operations.delete(id);
      void this.#closeEntry(entry);
    }
  }

  async #closeEntry(entry: OperationEntry): Promise<void> {
    try {
      const { runner } = await entry.ready;
      await runner.close();
    } catch {
      // A load that failed has nothing to close.
    }
  }
}
