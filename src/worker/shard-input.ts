/**
 * The shard's input rows (its slice, read through src/shared/slices.ts: sheet XML for an xlsx
 * operation, NDJSON otherwise), what an attempt reads before it runs a row (with its
 * checkpoint, ./checkpoint-record.ts). A slice that breaks the splitter's contract is an
 * INTERNAL error (an error attempt).
 */
import type { ObjectStore } from "../shared/object-store.ts";
import { type Cell, decodeCell } from "../shared/schemas/cells.ts";
import type { ShardMessage } from "../shared/schemas/shard.ts";
import { readInputRows, SliceContexts } from "../shared/slices.ts";
import type { TaskRow } from "./tasks/task.ts";

/**
 * The shard's input rows from `cursor` on, cells decoded and keyed by header, and the number
 * of rows in the whole slice. Rows before the cursor are only counted, never decoded or run.
 * `contexts` holds the operations' slice contexts (shared strings) across shards.
 */
export async function readSlice(
  store: ObjectStore,
  message: ShardMessage,
  headers: string[],
  signal: AbortSignal,
  cursor: number,
  contexts: SliceContexts = new SliceContexts({ store }),
): Promise<{ rows: TaskRow[]; total: number }> {
  const rows: TaskRow[] = [];
  let total = 0;
  for await (const { i, c } of readInputRows(store, contexts, message, headers.length, signal)) {
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
