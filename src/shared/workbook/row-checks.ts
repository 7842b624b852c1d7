/**
 * What is wrong with one data row's shape, as sentences: values beyond the header's last
 * column (they have no column to go to), text over Excel's cell limit, and what the reader
 * noticed (a formula with no cached value). Intake refuses a first data row with a problem;
 * the splitter keeps the row and makes the problems its error, so no value vanishes silently.
 */
import type { Cell } from "../schemas/cells.ts";
import { columnLetter, EXCEL_MAX_CELL_CHARS, isEmptyCell } from "./row-shape.ts";

export interface RowShape {
  n: number;
  cells: readonly Cell[];
  notes: readonly string[];
}

const CHARS = EXCEL_MAX_CELL_CHARS.toLocaleString("en-US");

export interface RowProblem {
  /** What is wrong, naming the row or cell. */
  problem: string;
  /** What the splitter does about it when it keeps the row (appended to `problem`). */
  kept: string;
}

/** The row's problems given a header of `width` columns; [] when it is fine. */
export function rowProblemList(row: RowShape, width: number): RowProblem[] {
  const out: RowProblem[] = row.notes.map((note) => ({ problem: note, kept: "" }));
  const extra: number[] = [];
  for (let k = width; k < row.cells.length; k++) if (!isEmptyCell(row.cells[k])) extra.push(k);
  if (extra.length > 0) {
    const refs = extra.slice(0, 3).map((k) => `${columnLetter(k)}${row.n}`);
    out.push({
      problem: `row ${row.n} has ${extra.length === 1 ? "a value" : `${extra.length} values`} beyond the header's last column (${columnLetter(width - 1)}): ${refs.join(", ")}${extra.length > 3 ? ", …" : ""}`,
      kept: ", not processed",
    });
  }
  for (let k = 0; k < Math.min(width, row.cells.length); k++) {
    const cell = row.cells[k];
    if (typeof cell === "string" && cell.length > EXCEL_MAX_CELL_CHARS) {
      out.push({
        problem: `cell ${columnLetter(k)}${row.n} has more than ${CHARS} characters, Excel's limit for a cell`,
        kept: `: cut to ${CHARS}`,
      });
    }
  }
  return out;
}

/** The problems of a row the splitter keeps, as sentences saying what was done. */
export function rowProblems(row: RowShape, width: number): string[] {
  // Read for every row of every slice: most have none, said without building a list.
  if (!mayHaveProblems(row, width)) return [];
  return rowProblemList(row, width).map((p) => p.problem + p.kept);
}

/** False when `rowProblemList` has nothing to say (true may still find nothing). */
function mayHaveProblems(row: RowShape, width: number): boolean {
  if (row.notes.length > 0 || row.cells.length > width) return true;
  for (const cell of row.cells) {
    if (typeof cell === "string" && cell.length > EXCEL_MAX_CELL_CHARS) return true;
  }
  return false;
}

/** The cells cut to Excel's cell limit (the problem is reported by `rowProblems`). */
export function cutLongCells(cells: readonly Cell[]): Cell[] {
  return cells.map((c) =>
    typeof c === "string" && c.length > EXCEL_MAX_CELL_CHARS ? c.slice(0, EXCEL_MAX_CELL_CHARS) : c,
  );
}
