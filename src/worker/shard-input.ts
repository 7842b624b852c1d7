/**
 * The shard's input rows (its slice, read through src/shared/slices.ts: sheet XML for an xlsx
 * operation, NDJSON for csv, old operations and retry slices), what an attempt reads before it
 * runs a row (with its checkpoint, ./checkpoint-record.ts). A slice that breaks the splitter's
 * contract is an INTERNAL error (an error attempt). A slice that does not exist is
 * `ShardInputMissingError`: while the operation is still queued or splitting that means "not
 * yet" (the splitter writes it before it queues the shard's message, so only an early duplicate
 * or re-driven message gets here), and the shard is released for later instead of counting an
 * error attempt (`inputNotYet`).
 */
import type { ObjectStore } from "../shared/object-store.ts";
import type { Cell } from "../shared/schemas/cells.ts";
import type { LifecycleStatus } from "../shared/schemas/operation.ts";
import type { ShardMessage } from "../shared/schemas/shard.ts";
import { readDecodedRows, SliceContexts } from "../shared/slices.ts";
import type { TaskRow } from "./tasks/task.ts";

/** The shard's input slice does not exist (not yet written, or gone). */
export { SliceMissingError as ShardInputMissingError } from "../shared/slices.ts";

/** Statuses in which the splitter may still write a missing slice. */
const SPLIT_PENDING: ReadonlySet<LifecycleStatus> = new Set(["queued", "splitting"]);

/** First pause before a not-yet shard is looked at again; grows with its deliveries. */
const NOT_YET_FIRST_S = 5;
const NOT_YET_MAX_S = 60;

/**
 * Whether a missing slice is "not yet" (the operation has not finished splitting: release the
 * message for later, no error attempt) and after how long, or undefined when it is missing for
 * good (the split is done: an error attempt, so the poison limit ends it). The pause grows with
 * the deliveries (5, 10, 15 … 60 s) so a long split is waited out before SQS's redrive.
 */
export function inputNotYet(
  status: LifecycleStatus | undefined,
  receiveCount: number,
): { afterSeconds: number } | undefined {
  if (status === undefined || !SPLIT_PENDING.has(status)) return undefined;
  return { afterSeconds: Math.min(NOT_YET_MAX_S, NOT_YET_FIRST_S * Math.max(1, receiveCount)) };
}

/**
 * A row of the slice as a task sees it: its cells in header order as read, and by header only
 * when a runner asks (transform's threads take the cells as they are).
 */
class SliceTaskRow implements TaskRow {
  readonly index: number;
  readonly cells: readonly Cell[];
  readonly #headers: readonly string[];
  #values: Record<string, Cell> | undefined;

  constructor(index: number, cells: readonly Cell[], headers: readonly string[]) {
    this.index = index;
    this.cells = cells;
    this.#headers = headers;
  }

  get values(): Record<string, Cell> {
    if (!this.#values) {
      const values: Record<string, Cell> = {};
      this.#headers.forEach((header, at) => {
        values[header] = this.cells[at] ?? null;
      });
      this.#values = values;
    }
    return this.#values;
  }
}

/**
 * The shard's input rows from `cursor` on, cells decoded and keyed by header, and the number
 * of rows in the whole slice. Rows before the cursor are only counted, never run.
 * `contexts` holds the operations' slice contexts (shared strings) across shards.
 */
export async function readSlice(
  store: ObjectStore,
  message: ShardMessage,
  headers: string[],
  signal: AbortSignal,
  cursor: number,
  contexts: SliceContexts = new SliceContexts({ store }),
): Promise<{ rows: TaskRow[]; total: number; notes: Map<number, string> }> {
  const rows: TaskRow[] = [];
  // The splitter's notes (cells it could not keep): they open the row's error in the output.
  const notes = new Map<number, string>();
  let total = 0;
  const width = headers.length;
  for await (const { i, cells, n } of readDecodedRows(store, contexts, message, width, signal)) {
    total++;
    if (i < cursor) continue;
    if (n !== undefined) notes.set(i, n);
    rows.push(new SliceTaskRow(i, cells, headers));
  }
  return { rows, total, notes };
}
