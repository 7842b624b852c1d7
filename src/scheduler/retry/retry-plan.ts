/**
 * Retrying failed rows, its pure parts: which rows of a shard ended with an error, which outcome
 * of a row counts when several runs produced one (the latest), and the retry records kept in the
 * manifest (`retries`). The I/O around them: ./shard-versions.ts (reading a shard's runs),
 * ./retry-planner.ts (the scheduler's planning job), ../operations.ts (the request).
 */
import type { ResultRow } from "../../shared/schemas/cells.ts";
import type {
  LifecycleStatus,
  RetryRecord,
  RetryShard,
  ShardRange,
} from "../../shared/schemas/operation.ts";

/** What the output holds for one row: a result (with or without an error), or a shard's failure. */
export type RowOutcome = { result: ResultRow } | { failed: string };

/** One run of a shard (the split's, or a retry's): its results, or the failure of all its rows. */
export interface ShardRunOutcomes {
  /** Set when the run was given up on (poison, dead-lettered): every row in `rows` failed. */
  failed?: string | undefined;
  /** The rows of a failed run. */
  rows: readonly number[];
  /** The results of a run that committed; a repeated row index keeps its first result. */
  results: Iterable<ResultRow>;
}

/**
 * Each row's outcome from the runs of one shard, oldest first: a later run replaces the rows it
 * ran (a retry runs only failed rows, so a finished row keeps its first result). Returns the
 * outcomes and how many repeated results within one run were dropped.
 */
export function latestOutcomes(runs: readonly ShardRunOutcomes[]): {
  outcomes: Map<number, RowOutcome>;
  duplicates: number;
} {
  const outcomes = new Map<number, RowOutcome>();
  let duplicates = 0;
  for (const run of runs) {
    if (run.failed !== undefined) {
      for (const row of run.rows) outcomes.set(row, { failed: run.failed });
      continue;
    }
    const seen = new Set<number>();
    for (const result of run.results) {
      if (seen.has(result.i)) {
        duplicates++;
        continue;
      }
      seen.add(result.i);
      outcomes.set(result.i, { result });
    }
  }
  return { outcomes, duplicates };
}

/** Whether a row ended with an error: no result, its shard failed, or its result has one. */
export function endedWithError(outcome: RowOutcome | undefined): boolean {
  if (outcome === undefined || "failed" in outcome) return true;
  return outcome.result.e !== undefined && outcome.result.e !== null;
}

/** The rows of `range` that ended with an error, in row order: what a retry runs again. */
export function rowsToRetry(
  range: Pick<ShardRange, "start" | "end">,
  outcomes: ReadonlyMap<number, RowOutcome>,
): number[] {
  const rows: number[] = [];
  for (let i = range.start; i < range.end; i++) {
    if (endedWithError(outcomes.get(i))) rows.push(i);
  }
  return rows;
}

/**
 * The task options a retry runs with: the operation's current ones with the request's changes
 * on top (a key set to null is removed, so an option can go back to its default).
 */
export function retryOptions(
  current: Record<string, unknown>,
  changes: Record<string, unknown> | undefined,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...current };
  for (const [key, value] of Object.entries(changes ?? {})) {
    if (value === null) delete out[key];
    else out[key] = value;
  }
  return out;
}

/**
 * The retries after a new one is asked for at `now`: a previous retry still open (its run was
 * failed before its merge, e.g. for capacity) is closed with the status the operation ended in.
 */
export function withNewRetry(
  retries: readonly RetryRecord[] | undefined,
  ended: LifecycleStatus,
  options: Record<string, unknown>,
  now: string,
): RetryRecord[] {
  const closed = (retries ?? []).map((r) =>
    r.endedAt === undefined ? { ...r, endedAt: now, status: ended } : r,
  );
  return [...closed, { number: closed.length + 1, requestedAt: now, options: { ...options } }];
}

/** The retries with the open one planned: its shards and the rows they run. */
export function withRetryPlanned(
  retries: readonly RetryRecord[],
  shards: readonly RetryShard[],
  now: string,
): RetryRecord[] {
  return retries.map((r, k) =>
    k === retries.length - 1 && r.endedAt === undefined && r.shards === undefined
      ? {
          ...r,
          shards: [...shards],
          rows: shards.reduce((sum, s) => sum + s.rows, 0),
          plannedAt: now,
        }
      : r,
  );
}

/** The retries with the open one ended (the operation's merge or failure after it). */
export function withRetryEnded(
  retries: readonly RetryRecord[] | undefined,
  status: LifecycleStatus,
  now: string,
  errorRows?: number,
): RetryRecord[] | undefined {
  if (!retries || retries.length === 0) return retries as RetryRecord[] | undefined;
  return retries.map((r, k) =>
    k === retries.length - 1 && r.endedAt === undefined
      ? { ...r, endedAt: now, status, ...(errorRows === undefined ? {} : { errorRows }) }
      : r,
  );
}

/** Every run of `base` in order: itself, then its shard in each retry that ran some of its rows. */
export function runsOf(
  base: ShardRange,
  retries: readonly Pick<RetryRecord, "shards">[] | undefined,
): Array<{ id: string; retryShard?: RetryShard }> {
  const runs: Array<{ id: string; retryShard?: RetryShard }> = [{ id: base.id }];
  for (const retry of retries ?? []) {
    for (const shard of retry.shards ?? []) {
      if (shard.base === base.id) runs.push({ id: shard.id, retryShard: shard });
    }
  }
  return runs;
}
