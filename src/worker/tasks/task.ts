/**
 * The task plugin interface: what the shard processor needs from a row processor. Built-in
 * tasks (`http-enrich`, `transform`) implement it; `createTaskRunner` in `registry.ts` picks one.
 */

import { setMaxListeners } from "node:events";
import type { Logger } from "../../shared/logger.ts";
import type { Cell, ResultRow } from "../../shared/schemas/cells.ts";

/** One input row as a task sees it: its input row index and its cells by header name. */
export interface TaskRow {
  index: number;
  values: Record<string, Cell>;
  /**
   * The same cells in the operation's header order, when the reader has them that way (the
   * shard's slice does): runners that pass rows on whole (transform's threads) take them as they
   * are instead of looking every header up.
   */
  cells?: readonly Cell[];
}

export interface TaskContext {
  /**
   * The shard's signal. When it aborts, `runRows` rejects with its reason: an aborted shard is
   * handed to another worker, never committed with made-up row errors.
   */
  signal: AbortSignal;
  /** Bound to the operation and shard. */
  logger: Logger;
  /** Progress: called with the number of rows just finished (for metrics). */
  onRowDone?: (n: number) => void;
  /**
   * Called with rows as soon as they finish, in any order (checkpoints take the contiguous
   * prefix of finished rows). Every row is also in `runRows`' result.
   */
  onResults?: (rows: readonly ResultRow[]) => void;
}

export interface TaskRunner {
  /** Result columns known before any row ran (may be empty: more can appear in results). */
  readonly columns: string[];
  /**
   * Processes rows and returns one ResultRow per input row, in input order. A row that fails
   * gets `e` (a one-line error) and never fails the batch. Rejects with the signal's reason
   * when it aborts, and with a ShardfleetError when the runner itself breaks (a worker thread
   * that dies): that fails the shard's attempt, not its rows.
   * Safe to call concurrently (several shards of one operation share a runner).
   */
  runRows(rows: TaskRow[], ctx: TaskContext): Promise<ResultRow[]>;
  /** Releases pools and threads. The runner is unusable afterwards. */
  close(): Promise<void>;
}

/** A one-line error for a row's `e`: messages from plugins and servers may span lines. */
export function oneLine(message: string, max = 500): string {
  const line = message.replace(/\s*[\r\n]+\s*/g, " ").trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/**
 * A child of `parent` that may carry any number of listeners: a task waits on its shard's
 * signal once per row in flight (hundreds), which would trip Node's leak warning on the shard's
 * own signal. Call `dispose` when done so the parent does not keep the child alive.
 */
export function childSignal(parent: AbortSignal): { signal: AbortSignal; dispose: () => void } {
  const child = new AbortController();
  setMaxListeners(0, child.signal);
  const onAbort = () => child.abort(parent.reason);
  if (parent.aborted) onAbort();
  else parent.addEventListener("abort", onAbort, { once: true });
  return { signal: child.signal, dispose: () => parent.removeEventListener("abort", onAbort) };
}
