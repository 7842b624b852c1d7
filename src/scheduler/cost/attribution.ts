/**
 * Splitting an instance's cost across the operations it worked for, and measuring wasted work.
 * Pure: the report builder feeds it bills (billing.ts) and attempt records.
 *
 * Attribution of one instance run `[start, billedEnd)` costing `usd`:
 * - busy time is the union of its attempts' intervals (clipped to the run); idle time is the
 *   rest, and idle cost = usd × idle / run length — its own line, never hidden in an operation;
 * - busy cost is split across attempts by their (clipped) shard-seconds. An instance running
 *   several shards at once has more shard-seconds than busy seconds: each attempt then gets its
 *   share of the busy cost, not a second copy of it;
 * - so attempt costs + idle cost = usd (property-tested to 1e-9).
 */

/** One attempt's time on an instance. */
export interface BusyInterval {
  /** Unique per interval (the attempt id). */
  key: string;
  operationId: string;
  from: number;
  to: number;
}

export interface InstanceAttribution {
  /** Cost per interval key (zero-length or out-of-run intervals get 0). */
  byInterval: Map<string, number>;
  /** Cost per operation (the sum of its intervals). */
  byOperation: Map<string, number>;
  idleUsd: number;
  /** Busy (union) and idle seconds of the run. */
  busySeconds: number;
  idleSeconds: number;
}

/** Length of the union of intervals (clipped to [lo, hi)), in ms. */
export function unionLength(
  intervals: readonly { from: number; to: number }[],
  lo: number,
  hi: number,
): number {
  const clipped = intervals
    .map((i) => ({ from: Math.max(lo, i.from), to: Math.min(hi, i.to) }))
    .filter((i) => i.to > i.from)
    .sort((a, b) => a.from - b.from);
  let total = 0;
  let curFrom = Number.NEGATIVE_INFINITY;
  let curTo = Number.NEGATIVE_INFINITY;
  for (const i of clipped) {
    if (i.from > curTo) {
      if (curTo > curFrom) total += curTo - curFrom;
      curFrom = i.from;
      curTo = i.to;
    } else if (i.to > curTo) curTo = i.to;
  }
  if (curTo > curFrom) total += curTo - curFrom;
  return total;
}

export function attributeInstance(
  run: { start: number; billedEnd: number; usd: number },
  busy: readonly BusyInterval[],
): InstanceAttribution {
  const length = Math.max(0, run.billedEnd - run.start);
  const union = unionLength(busy, run.start, run.billedEnd);
  const clippedMs = busy.map((b) =>
    Math.max(0, Math.min(run.billedEnd, b.to) - Math.max(run.start, b.from)),
  );
  const shardMs = clippedMs.reduce((s, x) => s + x, 0);
  const busyUsd = length === 0 || shardMs === 0 ? 0 : (run.usd * union) / length;
  const byInterval = new Map<string, number>();
  const byOperation = new Map<string, number>();
  let attributed = 0;
  busy.forEach((b, i) => {
    const usd = shardMs === 0 ? 0 : (busyUsd * clippedMs[i]!) / shardMs;
    byInterval.set(b.key, (byInterval.get(b.key) ?? 0) + usd);
    byOperation.set(b.operationId, (byOperation.get(b.operationId) ?? 0) + usd);
    attributed += usd;
  });
  // Idle is what is left, so the parts add up to the whole whatever the rounding did.
  return {
    byInterval,
    byOperation,
    idleUsd: run.usd - attributed,
    busySeconds: union / 1000,
    idleSeconds: (length - union) / 1000,
  };
}

/** What a shard's attempts did, for wasted-work accounting. */
export interface ShardWorkInput {
  /** Rows the committed attempt's shard holds (done.json `rows`); 0 when not committed. */
  committedRows: number;
  /** The committing attempt, when known. */
  winnerAttemptId?: string;
  attempts: readonly {
    attemptId: string;
    rowsDone: number;
    cause: string;
    usd: number;
    /** When it started (ms): orders the attempts, for the chain of start cursors. */
    startedAtMs?: number;
    /** The cursor it resumed from (the shard's first row when it started afresh). */
    startCursor?: number;
  }[];
}

export interface ShardWaste {
  /** Rows processed more than once. */
  rowsRedone: number;
  /** Attempts that did not commit although they finished their rows (losing straggler copies). */
  losingCopies: number;
  usd: number;
}

/**
 * Rows each attempt processed, at least: its own count (`rowsDone`, exact for an attempt that
 * ended with a record, as of its last record write for one that died without a word), and
 * never fewer than the rows it left checkpointed — what the next attempt (by start time) resumed
 * from beyond where this one started. The second reading is what a hard kill cannot take away:
 * the dead attempt's record may be older than its last checkpoint.
 */
export function processedRows(attempts: ShardWorkInput["attempts"]): number[] {
  const order = attempts
    .map((a, i) => ({ a, i }))
    .filter(({ a }) => a.startCursor !== undefined && a.startedAtMs !== undefined)
    .sort((x, y) => x.a.startedAtMs! - y.a.startedAtMs!);
  const out = attempts.map((a) => a.rowsDone);
  for (let k = 0; k + 1 < order.length; k++) {
    const { a, i } = order[k]!;
    const advance = order[k + 1]!.a.startCursor! - a.startCursor!;
    if (advance > 0) out[i] = Math.max(out[i]!, advance);
  }
  return out;
}

/**
 * Wasted work of one shard. Definition: every row processed beyond the rows the shard
 * committed was processed in vain, so
 *
 *   rowsRedone = max(0, Σ attempts' processed rows − committedRows)
 *
 * which counts both rows redone after a reclaim (work after the last checkpoint of an
 * interrupted/lost attempt, which the committing attempt ran again from its start cursor) and a
 * whole losing straggler copy. A shard that never committed (or was committed as failed) has
 * committedRows 0: all its processed rows count as wasted. Processed rows per attempt are
 * `processedRows`. Its cost is the shard's cost (Σ its attempts' attributed cost) × rowsRedone /
 * Σ processed — rows are taken as equally expensive within a shard. An attempt killed without a
 * word is counted up to its last record write (every checkpoint and every 10 s): rows it
 * finished after that, and rows in flight when it died, are invisible, so the figure stays a
 * lower bound for such attempts.
 */
export function shardWaste(input: ShardWorkInput): ShardWaste {
  const rows = processedRows(input.attempts);
  const processed = rows.reduce((s, n) => s + n, 0);
  const usd = input.attempts.reduce((s, a) => s + a.usd, 0);
  const rowsRedone = Math.max(0, processed - input.committedRows);
  const losingCopies = input.attempts.filter(
    (a) =>
      a.cause === "completed" &&
      input.winnerAttemptId !== undefined &&
      a.attemptId !== input.winnerAttemptId,
  ).length;
  return {
    rowsRedone,
    losingCopies,
    usd: processed === 0 ? 0 : (usd * rowsRedone) / processed,
  };
}
