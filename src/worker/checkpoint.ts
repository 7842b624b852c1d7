/**
 * The pure side of checkpointing: where a shard resumes, which finished rows may go into the
 * next chunk, and the chunk list a commit carries. The shard processor does the I/O.
 *
 * The scheme, and why it is sound with rows finishing out of order (http-enrich runs 100–200
 * rows at once; transform runs batches on several threads): the remaining rows run as ONE
 * batch at full concurrency, and every finished row is recorded as it finishes. A checkpoint
 * takes only the *contiguous prefix* of finished rows, from the cursor up to the first row that
 * is not finished yet, writes it as one chunk named by its row range, then moves the cursor to
 * that first unfinished row. So the rows before the cursor are always exactly the rows in the
 * chunk list, the chunks tile `[start, cursor)` without gap or overlap, and a worker resuming
 * from the checkpoint processes exactly the rows from the cursor on. Rows that finished past the
 * first unfinished one wait in memory for the next checkpoint; an abrupt stop loses only them
 * and the prefix since the last checkpoint (at most one interval plus the rows in flight).
 * Cutting sub-batches of `everyRows` instead would be simpler, but each sub-batch would wait
 * for its slowest row and leave the concurrency idle meanwhile.
 */
import type { ResultRow } from "../shared/schemas/cells.ts";
import type { Checkpoint, ChunkRef, SegmentRef } from "../shared/schemas/shard.ts";

/** Where a shard stands: the rows before `cursor` are in `chunks`. */
export interface ShardProgress {
  /** Input row index of the first row not in a chunk yet (`end` when all are). */
  cursor: number;
  /** Contiguous, in row order, tiling `[start, cursor)`. */
  chunks: ChunkRef[];
  /** Result columns seen so far, declared ones first. */
  columns: string[];
  /**
   * The chunks' rendered output rows, in row order, when this attempt (or the one it resumed)
   * rendered them; absent when none was.
   */
  segments?: SegmentRef[];
  /** Rows in `chunks` that carry an error. */
  errorRows: number;
}

/** Columns of `a`, then the columns of `b` not in `a`, in order. */
export function mergeColumns(a: readonly string[], b: readonly string[]): string[] {
  const seen = new Set(a);
  const out = [...a];
  for (const column of b) {
    if (!seen.has(column)) {
      seen.add(column);
      out.push(column);
    }
  }
  return out;
}

/**
 * Why `chunks` do not tile `[start, cursor)` exactly (sorted, no gap, no overlap, none empty
 * unless the whole range is empty), or undefined when they do.
 */
export function chunkListProblem(
  chunks: readonly ChunkRef[],
  start: number,
  cursor: number,
): string | undefined {
  if (cursor < start) return `cursor ${cursor} is before the shard start ${start}`;
  let at = start;
  for (const chunk of chunks) {
    if (chunk.start !== at) return `chunk ${chunk.start}-${chunk.end} does not start at ${at}`;
    if (chunk.end < chunk.start) return `chunk ${chunk.start}-${chunk.end} ends before it starts`;
    if (chunk.end === chunk.start && !(chunks.length === 1 && start === cursor)) {
      return `chunk ${chunk.start}-${chunk.end} is empty`;
    }
    at = chunk.end;
  }
  if (at !== cursor) return `chunks end at ${at}, not at the cursor ${cursor}`;
  return undefined;
}

/** Appends a chunk that must start at the current cursor. */
export function appendChunk(chunks: readonly ChunkRef[], chunk: ChunkRef): ChunkRef[] {
  const last = chunks.at(-1);
  if (last && last.end !== chunk.start) {
    throw new Error(`chunk ${chunk.start}-${chunk.end} does not follow ${last.start}-${last.end}`);
  }
  return [...chunks, chunk];
}

/**
 * Where a shard `[start, end)` resumes: from a checkpoint that belongs to it and is consistent,
 * otherwise from its start (`ignored` says why a checkpoint was not used).
 */
export function resumeFrom(
  checkpoint: Checkpoint | undefined,
  shard: { operationId: string; shardId: string; start: number; end: number },
  declaredColumns: readonly string[],
): { progress: ShardProgress; ignored?: string } {
  const fresh: ShardProgress = {
    cursor: shard.start,
    chunks: [],
    columns: [...declaredColumns],
    errorRows: 0,
  };
  if (!checkpoint) return { progress: fresh };
  const problem =
    checkpoint.operationId !== shard.operationId || checkpoint.shardId !== shard.shardId
      ? `it belongs to ${checkpoint.operationId}/${checkpoint.shardId}`
      : checkpoint.cursor > shard.end
        ? `its cursor ${checkpoint.cursor} is past the shard end ${shard.end}`
        : chunkListProblem(checkpoint.chunks, shard.start, checkpoint.cursor);
  if (problem !== undefined) return { progress: fresh, ignored: problem };
  return {
    progress: {
      cursor: checkpoint.cursor,
      chunks: checkpoint.chunks.map((c) => ({ ...c })),
      ...(checkpoint.segments ? { segments: checkpoint.segments.map((s) => ({ ...s })) } : {}),
      columns: mergeColumns(declaredColumns, checkpoint.columns),
      errorRows: checkpoint.errorRows,
    },
  };
}

/** A piece of finished rows ready to become a chunk: `[start, end)` by input row index. */
export interface Piece {
  start: number;
  end: number;
  /** Results in row order. */
  rows: ResultRow[];
  /** Position (in the tracker's row list) after the piece. */
  nextPosition: number;
}

/**
 * Tracks which of a shard's remaining rows have finished and hands out the contiguous finished
 * prefix (see the top of this file). `indices` are the input row indices of the rows still to
 * process, ascending (gaps allowed); `end` is the shard's end.
 */
export class PrefixTracker {
  readonly #indices: readonly number[];
  readonly #positionOf = new Map<number, number>();
  readonly #results: Array<ResultRow | undefined>;
  readonly #end: number;
  /** First position not handed out yet. */
  #flushed = 0;
  /** First position not finished yet (≥ #flushed). */
  #prefix = 0;

  constructor(indices: readonly number[], end: number) {
    this.#indices = indices;
    this.#end = end;
    this.#results = new Array(indices.length);
    indices.forEach((index, position) => {
      this.#positionOf.set(index, position);
    });
  }

  /** Records finished rows (again is harmless). Unknown row indices are ignored. */
  record(rows: readonly ResultRow[]): void {
    for (const row of rows) {
      const position = this.#positionOf.get(row.i);
      if (position !== undefined) this.#results[position] = row;
    }
    while (this.#prefix < this.#results.length && this.#results[this.#prefix] !== undefined) {
      this.#prefix++;
    }
  }

  /** Finished rows in the prefix not handed out yet. */
  get pending(): number {
    return this.#prefix - this.#flushed;
  }

  /** Rows recorded as finished, anywhere. */
  get finished(): number {
    return this.#results.filter((r) => r !== undefined).length;
  }

  /** True once every row finished. */
  get complete(): boolean {
    return this.#prefix === this.#results.length;
  }

  /**
   * The finished prefix not handed out yet, as a chunk from `cursor`: it ends at the first
   * unfinished row's index, or at the shard end once every row finished. Undefined when there
   * is nothing to hand out. Call `advance` once it is durable.
   */
  peek(cursor: number): Piece | undefined {
    if (this.#prefix === this.#flushed && !(this.complete && cursor < this.#end)) return undefined;
    const end = this.#prefix < this.#indices.length ? this.#indices[this.#prefix]! : this.#end;
    if (end <= cursor && this.#prefix === this.#flushed) return undefined;
    return {
      start: cursor,
      end,
      rows: this.#results.slice(this.#flushed, this.#prefix) as ResultRow[],
      nextPosition: this.#prefix,
    };
  }

  /** Marks a piece from `peek` as written. */
  advance(piece: Piece): void {
    this.#flushed = Math.max(this.#flushed, piece.nextPosition);
  }
}

/** Rows of `rows` that carry an error. */
export function countErrors(rows: readonly ResultRow[]): number {
  let n = 0;
  for (const row of rows) if (row.e !== undefined) n++;
  return n;
}

/** Result columns of `rows` in first-seen order. */
export function columnsOf(rows: readonly ResultRow[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const row of rows) {
    for (const column of Object.keys(row.r ?? {})) {
      if (!seen.has(column)) {
        seen.add(column);
        out.push(column);
      }
    }
  }
  return out;
}

/** Progress after `piece` was written as chunk `key`. */
export function progressAfter(progress: ShardProgress, piece: Piece, key: string): ShardProgress {
  return {
    cursor: piece.end,
    chunks: appendChunk(progress.chunks, { key, start: piece.start, end: piece.end }),
    ...(progress.segments ? { segments: progress.segments } : {}),
    columns: mergeColumns(progress.columns, columnsOf(piece.rows)),
    errorRows: progress.errorRows + countErrors(piece.rows),
  };
}

/**
 * The shortest time between row-count checkpoints so that writes taking `writeMs` (smoothed)
 * stay within `budget` of the time: `writeMs / budget`, never more than `everyMs` (the time
 * trigger). 0 before the first write.
 */
export function checkpointFloorMs(
  writeMs: number | undefined,
  budget: number,
  everyMs: number,
): number {
  return writeMs === undefined ? 0 : Math.min(everyMs, writeMs / budget);
}

/** Exponentially smoothed write time: one slow write does not stall checkpoints for long. */
export function smoothWriteMs(previous: number | undefined, ms: number): number {
  return previous === undefined ? ms : 0.8 * previous + 0.2 * ms;
}
