/**
 * One attempt at one shard, its writing side: records finished rows, decides when to
 * checkpoint (rows or time), serialises the writes, writes the final chunk, flushes the last
 * piece of an attempt that stops early. ./shard-processor.ts drives it: runs the rows, commits.
 *
 * Checkpoints (scheme and soundness: ./checkpoint.ts): every `checkpoint.everyRows` finished
 * rows or `checkpoint.everySeconds`, whichever comes first, the contiguous prefix of finished
 * rows is written as a chunk (`keys.chunk`, named by its row range), then the checkpoint object
 * (cursor, chunk list, columns, error rows). Writes run beside the rows, never pausing them, one
 * at a time; each is timed (`checkpointMs` on the debug line "checkpoint written", totals on
 * "shard committed"). Each checkpoint (and each everySeconds without new rows) also checks
 * whether the shard is committed already: if so, the run's `signal` aborts (with a
 * ShardLostError: the processor stops the rows) and it writes nothing more. Every checkpoint,
 * and every 10 s without one, the attempt record is refreshed with the rows done: its sign of
 * life, and what wasted work counts for an attempt killed without a word.
 */
import type { Clock } from "../shared/clock.ts";
import { ShardLostError } from "../shared/errors.ts";
import { keys } from "../shared/keys.ts";
import type { Logger } from "../shared/logger.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import { isCommitted } from "../shared/records/done-marker.ts";
import type { ResultRow } from "../shared/schemas/cells.ts";
import type { SegmentRef, ShardMessage } from "../shared/schemas/shard.ts";
import type { AttemptRecord } from "./attempt-records.ts";
import { COMMITTED_ELSEWHERE } from "./attempts.ts";
import {
  checkpointFloorMs,
  type Piece,
  PrefixTracker,
  progressAfter,
  type ShardProgress,
  smoothWriteMs,
} from "./checkpoint.ts";
import { writeCheckpoint } from "./checkpoint-record.ts";
import { type OutputContext, putSegment } from "./output-segments.ts";
import { putResultChunk } from "./result-chunks.ts";

/** A running attempt refreshes its record at least this often (its sign of life). */
const ATTEMPT_REFRESH_MS = 10_000;
/** Deadline of one checkpoint write (chunk + checkpoint + attempt). */
export const WRITE_TIMEOUT_MS = 30_000;

export interface ShardRunDeps {
  store: ObjectStore;
  clock: Clock;
  logger: Logger;
}

export interface ShardRunOptions {
  message: ShardMessage;
  /** The attempt's record: refreshed as the attempt's sign of life. */
  attempt: AttemptRecord;
  progress: ShardProgress;
  /** Input row indices of the rows this attempt runs. */
  indices: readonly number[];
  everyRows: number;
  everyMs: number;
  /** Largest share of the time checkpoint writes may take (see ShardProcessorOptions). */
  budget: number;
  /**
   * Smoothed checkpoint write time (ms) of earlier runs in this process, so the first
   * row-count checkpoint keeps to the budget too (cheap rows then leave one chunk per shard,
   * not a first one of `everyRows` rows). @default none: the first is due at `everyRows` rows
   */
  writeMs?: number;
  /** Aborts when the shard is lost: no write may happen after that. */
  lostSignal: AbortSignal;
  /**
   * Render each chunk's output rows as a sheet segment beside it (./output-segments.ts).
   * @default none: chunks only, the merger renders their rows
   */
  output?: OutputContext;
}

/** Checkpoints written, and their total and largest write time in ms. */
export interface CheckpointStats {
  checkpoints: number;
  checkpointMs: number;
  maxCheckpointMs: number;
}

/** What a run that finished leaves: the progress to commit and its checkpoint figures. */
export interface ShardRunResult {
  progress: ShardProgress;
  stats: CheckpointStats;
}

/**
 * One attempt's checkpointing: records finished rows, decides when to checkpoint (rows or
 * time), serialises the writes, flushes the final piece.
 */
export class ShardRun {
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
  /** Aborts (with a ShardLostError) when a checkpoint finds the shard committed elsewhere. */
  readonly #committed = new AbortController();
  readonly #stats: CheckpointStats = { checkpoints: 0, checkpointMs: 0, maxCheckpointMs: 0 };

  constructor(deps: ShardRunDeps, options: ShardRunOptions) {
    this.#store = deps.store;
    this.#clock = deps.clock;
    this.#logger = deps.logger;
    this.#o = options;
    this.#progress = options.progress;
    this.#writeMs = options.writeMs;
    this.#tracker = new PrefixTracker(options.indices, options.message.end);
    this.#lastCheckpointAt = this.#clock.now();
    this.#lastLookAt = this.#clock.now();
    this.#lastAttemptWriteAt = this.#clock.now();
  }

  /** Where the run stands: the rows before `cursor` are durable. */
  get progress(): ShardProgress {
    return this.#progress;
  }

  /** Smoothed checkpoint write time (ms), once one was written or given. */
  get writeMs(): number | undefined {
    return this.#writeMs;
  }

  /** Checkpoint figures so far. */
  get stats(): CheckpointStats {
    return { ...this.#stats };
  }

  /**
   * Aborts, with a ShardLostError (COMMITTED_ELSEWHERE), when a checkpoint finds the shard
   * committed by another worker: stop the rows, commit nothing.
   */
  get signal(): AbortSignal {
    return this.#committed.signal;
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
  async finish(signal: AbortSignal): Promise<ShardRunResult> {
    await this.stop();
    const started = performance.now();
    const { operationId, shardId, start, end } = this.#o.message;
    const piece = this.#tracker.peek(this.#progress.cursor);
    const wrote = piece !== undefined || this.#progress.chunks.length === 0;
    if (piece) {
      const key = keys.chunk(operationId, shardId, piece.start, piece.end);
      const next = progressAfter(this.#progress, piece, key);
      const [, segment] = await Promise.all([
        putResultChunk(this.#store, key, piece.rows, signal),
        this.#putSegment(piece, next.columns, signal),
      ]);
      this.#tracker.advance(piece);
      this.#progress = withSegment(next, segment);
    } else if (this.#progress.chunks.length === 0) {
      const key = keys.chunk(operationId, shardId, start, end);
      const empty = { start, end, rows: [] };
      const [, segment] = await Promise.all([
        putResultChunk(this.#store, key, [], signal),
        this.#putSegment(empty, this.#progress.columns, signal),
      ]);
      this.#progress = withSegment(
        { ...this.#progress, cursor: end, chunks: [{ key, start, end }] },
        segment,
      );
    }
    // The last write counts towards the write time the next run starts from.
    if (wrote) this.#writeMs = smoothWriteMs(this.#writeMs, performance.now() - started);
    return { progress: this.#progress, stats: this.stats };
  }

  /**
   * The final checkpoint of an attempt that stops early: the finished prefix, within
   * `timeoutMs`. Best effort (a failure only means those rows run again).
   */
  async flush(timeoutMs: number): Promise<void> {
    await this.stop();
    if (this.#o.lostSignal.aborted || this.#committed.signal.aborted) return;
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
    if (
      this.#stopTicks.signal.aborted ||
      this.#o.lostSignal.aborted ||
      this.#committed.signal.aborted
    ) {
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
      !this.#committed.signal.aborted
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
      await this.#refreshAttempt(signal);
    }
  }

  /** True (and the attempt stopped) when another worker committed the shard. */
  async #committedElsewhere(signal: AbortSignal): Promise<boolean> {
    if (!(await isCommitted(this.#store, this.#o.message, signal))) return false;
    this.#logger.info("shard committed by another worker; stopping this attempt");
    this.#committed.abort(new ShardLostError(COMMITTED_ELSEWHERE));
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
    const after = progressAfter(this.#progress, piece, key);
    const [committed, , segment] = await Promise.all([
      checkCommitted ? this.#committedElsewhere(signal) : false,
      putResultChunk(this.#store, key, piece.rows, signal),
      this.#putSegment(piece, after.columns, signal),
    ]);
    if (committed) return;
    const next = withSegment(after, segment);
    await Promise.all([
      writeCheckpoint(
        { store: this.#store, clock: this.#clock },
        this.#o.message,
        this.#o.attempt.attemptId,
        next,
        signal,
      ),
      // Every checkpoint refreshes the attempt's rows too, so a hard kill's record is at most
      // one checkpoint old (wasted work counts from it).
      this.#refreshAttempt(signal),
    ]);
    this.#tracker.advance(piece);
    this.#progress = next;
    const ms = performance.now() - started;
    const now = this.#clock.now();
    this.#stats.checkpoints++;
    this.#stats.checkpointMs += ms;
    this.#writeMs = smoothWriteMs(this.#writeMs, ms);
    this.#stats.maxCheckpointMs = Math.max(this.#stats.maxCheckpointMs, ms);
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

  /** The piece's output segment, when this run renders them. */
  async #putSegment(
    piece: { start: number; end: number; rows: readonly ResultRow[] },
    columns: readonly string[],
    signal: AbortSignal,
  ): Promise<SegmentRef | undefined> {
    const output = this.#o.output;
    if (!output) return undefined;
    const put = await putSegment(this.#store, this.#o.message, piece, columns, output, signal);
    if (!put) {
      this.#logger.warn(
        { start: piece.start, end: piece.end },
        "cannot render a chunk's output rows (an input row is missing); the merger will",
      );
    } else if (put.cut > 0) {
      this.#logger.warn({ rows: put.cut }, "long cell text cut to Excel's cell limit");
    }
    return put?.ref;
  }

  async #refreshAttempt(signal: AbortSignal): Promise<void> {
    await this.#o.attempt.refresh(signal);
    this.#lastAttemptWriteAt = this.#clock.now();
  }
}

/** `progress` with its last chunk's output segment recorded (when there is one). */
function withSegment(progress: ShardProgress, segment: SegmentRef | undefined): ShardProgress {
  if (!segment) return progress;
  return { ...progress, segments: [...(progress.segments ?? []), segment] };
}
