/**
 * One row of the output workbook, as values: the input cells, the result columns, the error.
 * Both sides build rows with it: a worker rendering its shard's rows (src/worker/output-segments.ts)
 * and the merger rendering the rows no worker rendered (src/scheduler/merger.ts), so a row reads
 * the same whoever wrote it.
 */
import type { Cell, ResultRow } from "./schemas/cells.ts";
import { decodeCell } from "./schemas/cells.ts";

export const ERROR_COLUMN = "error";
export const NO_RESULT_ERROR = "no result for row";
/** The error of a row a cancel stopped before it ran. */
export const CANCELLED_ERROR = "cancelled";
/** Excel refuses longer cell text; longer values are cut (and a warning logged). */
export const MAX_CELL_TEXT = 32_767;

export interface OutputRow {
  cells: Cell[];
  error: string | null;
}

/**
 * One output row from decoded input cells (`width` of them, missing ones null), the input's
 * note, its result (undefined: none), the result columns, and `failed` (a shard given up on,
 * which overrides any result). The input's note comes before the error: it explains any result
 * that follows.
 */
export function outputRow(
  input: readonly Cell[],
  note: string | undefined,
  result: ResultRow | undefined,
  columns: readonly string[],
  width: number,
  failed?: string,
  noResult: string = NO_RESULT_ERROR,
): OutputRow {
  const cells: Cell[] = [];
  for (let k = 0; k < width; k++) cells.push(input[k] ?? null);
  const values = failed === undefined ? result?.r : undefined;
  for (const column of columns) {
    const encoded = values?.[column];
    cells.push(encoded === undefined ? null : decodeCell(encoded));
  }
  const outcome = failed ?? (result ? (result.e ?? null) : noResult);
  const error = note === undefined ? outcome : outcome === null ? note : `${note}; ${outcome}`;
  return { cells, error };
}

/**
 * Cuts text over Excel's cell limit (a transform plugin's result can be any length) and says so
 * in the row's error, so no cell is shortened without a word; the error itself is cut last.
 */
export function fitToExcel(
  row: OutputRow,
  names: readonly string[],
): { cells: Cell[]; error: string | null; cut: boolean } {
  const notes: string[] = [];
  const cells = row.cells.map((v, k) => {
    if (typeof v !== "string" || v.length <= MAX_CELL_TEXT) return v;
    notes.push(
      `${names[k] ?? `column ${k + 1}`} cut from ${v.length} to ${MAX_CELL_TEXT} characters (Excel's cell limit)`,
    );
    return v.slice(0, MAX_CELL_TEXT);
  });
  let error = notes.length > 0 ? [row.error, ...notes].filter(Boolean).join("; ") : row.error;
  if (error !== null && error.length > MAX_CELL_TEXT) error = error.slice(0, MAX_CELL_TEXT);
  return { cells, error, cut: notes.length > 0 || error !== row.error };
}
