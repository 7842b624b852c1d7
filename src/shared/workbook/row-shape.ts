/** Small, pure helpers about the shape of rows, shared by the readers, inspect and the splitter. */
import type { Cell } from "../schemas/cells.ts";

/** The most characters Excel keeps in one cell. */
export const EXCEL_MAX_CELL_CHARS = 32_767;

/** Null and "" carry nothing; a row made only of them is an empty row. */
export function isEmptyCell(cell: Cell | undefined): boolean {
  return cell === null || cell === undefined || cell === "";
}

export function isEmptyRow(cells: readonly Cell[]): boolean {
  return cells.every(isEmptyCell);
}

/**
 * The row cut or padded to exactly `width` cells: cells beyond the header have no column to
 * live in, so they are dropped; missing ones are null.
 */
export function fitRow(cells: readonly Cell[], width: number): Cell[] {
  const out = cells.slice(0, width);
  while (out.length < width) out.push(null);
  return out;
}

/** 0 → "A", 25 → "Z", 26 → "AA": column names as a spreadsheet user sees them. */
export function columnLetter(index: number): string {
  let n = index + 1;
  let out = "";
  while (n > 0) {
    const rem = (n - 1) % 26;
    out = String.fromCharCode(65 + rem) + out;
    n = Math.floor((n - 1) / 26);
  }
  return out;
}

/**
 * "A" → 0, "AA" → 26: the column of a reference's letters (`$` allowed before them, any case,
 * the row number after them ignored: "$b7" → 1), or -1 when it starts with none. No regex, no
 * new string: the sheet reader calls it for every cell.
 */
export function columnIndex(ref: string): number {
  let k = ref.charCodeAt(0) === 0x24 ? 1 : 0;
  let n = 0;
  let letters = 0;
  for (; k < ref.length; k++, letters++) {
    const upper = ref.charCodeAt(k) & ~0x20;
    if (upper < 0x41 || upper > 0x5a) break;
    n = n * 26 + (upper - 64);
  }
  return letters === 0 ? -1 : n - 1;
}

/** A cell as header text: trimmed; dates as ISO (a date at midnight UTC as YYYY-MM-DD). */
export function cellText(cell: Cell): string {
  if (cell === null) return "";
  if (cell instanceof Date) {
    const iso = cell.toISOString();
    return iso.endsWith("T00:00:00.000Z") ? iso.slice(0, 10) : iso;
  }
  return String(cell).trim();
}
