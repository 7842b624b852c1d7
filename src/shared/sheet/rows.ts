/**
 * Output rows as finished worksheet XML (`<row>` elements of SpreadsheetML), written without
 * any workbook object: strings inline (`t="inlineStr"`, no shared-strings table to agree on),
 * dates as serial numbers with one of the shared styles the merger writes in `xl/styles.xml`
 * (src/scheduler/workbook/output-xlsx.ts). Workers render their shard's rows with it; the merger
 * renders the header and the rows no worker rendered. Every row and cell carries its reference
 * (`r`): readers differ on rows without it, and the row number is known (input row index + 2).
 */
import type { Cell } from "../schemas/cells.ts";

/**
 * Cell style ids (`s`), indices into the `cellXfs` of the merger's `xl/styles.xml`; the order
 * there must match.
 */
export const CELL_STYLE = { plain: 0, date: 1, dateTime: 2, header: 3 } as const;

/** Number formats of the date styles (custom ids 164 and 165 in styles.xml). */
export const DATE_FORMATS = { date: "yyyy-mm-dd", dateTime: "yyyy-mm-dd hh:mm:ss" } as const;

/** Output row number of input row `index`: row 1 is the header. */
export function outputRowNumber(index: number): number {
  return index + 2;
}

const LETTERS: string[] = [];

/** Column letters of 0-based column `k` (0 → A, 26 → AA). */
export function columnRef(k: number): string {
  const cached = LETTERS[k];
  if (cached !== undefined) return cached;
  let n = k + 1;
  let s = "";
  while (n > 0) {
    const m = (n - 1) % 26;
    s = String.fromCharCode(65 + m) + s;
    n = Math.floor((n - 1) / 26);
  }
  LETTERS[k] = s;
  return s;
}

/** Days since 1899-12-30 (Excel's 1900 date system), as exceljs writes them. */
export function excelSerial(date: Date): number {
  return 25569 + date.getTime() / 86_400_000;
}

// Characters XML 1.0 cannot hold (dropped, as exceljs did), DEL (dropped, as exceljs did), and
// the ones that need escaping. A carriage return is kept as a reference: parsers turn a literal
// one into a line feed.
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters to remove.
const NEEDS_WORK = /[&<>\r\x00-\x08\x0B\x0C\x0E-\x1F\x7F\uFFFE\uFFFF]/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters to remove.
const NEEDS_WORK_ALL = /[&<>\r\x00-\x08\x0B\x0C\x0E-\x1F\x7F\uFFFE\uFFFF]/g;
const REPLACEMENT: Readonly<Record<string, string>> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  "\r": "&#13;",
};

/** Text for an element's content: escaped, characters XML cannot hold removed. */
export function xmlText(s: string): string {
  if (!NEEDS_WORK.test(s)) return s;
  return s.replace(NEEDS_WORK_ALL, (c) => REPLACEMENT[c] ?? "");
}

/** Leading or trailing white space, or a line break or tab: kept only with xml:space. */
const KEEP_SPACE = /^\s|\s$|[\t\n\r]/;

function stringCell(ref: string, text: string, style: number): string {
  const s = style === CELL_STYLE.plain ? "" : ` s="${style}"`;
  const space = KEEP_SPACE.test(text) ? ' xml:space="preserve"' : "";
  return `<c r="${ref}"${s} t="inlineStr"><is><t${space}>${xmlText(text)}</t></is></c>`;
}

/** One cell's XML (empty for null or a date that is not one). */
export function renderCell(ref: string, value: Cell): string {
  if (value === null) return "";
  switch (typeof value) {
    case "string":
      return stringCell(ref, value, CELL_STYLE.plain);
    case "number":
      // JSON carries no NaN or Infinity (they travel as text); guard anyway: XML cannot either.
      return Number.isFinite(value)
        ? `<c r="${ref}"><v>${value}</v></c>`
        : stringCell(ref, String(value), CELL_STYLE.plain);
    case "boolean":
      return `<c r="${ref}" t="b"><v>${value ? 1 : 0}</v></c>`;
    default: {
      const ms = value.getTime();
      if (Number.isNaN(ms)) return "";
      const style = ms % 86_400_000 === 0 ? CELL_STYLE.date : CELL_STYLE.dateTime;
      return `<c r="${ref}" s="${style}"><v>${excelSerial(value)}</v></c>`;
    }
  }
}

/** One `<row>` numbered `rowNumber` (1-based) holding `cells` from column A on. */
export function renderRow(rowNumber: number, cells: readonly Cell[]): string {
  let xml = `<row r="${rowNumber}">`;
  for (let k = 0; k < cells.length; k++) {
    const value = cells[k];
    if (value === null || value === undefined) continue;
    xml += renderCell(`${columnRef(k)}${rowNumber}`, value);
  }
  return `${xml}</row>`;
}

/** The header row: row 1, every name bold (the row's own style too, for readers that look there). */
export function renderHeaderRow(names: readonly string[]): string {
  let xml = `<row r="1" s="${CELL_STYLE.header}" customFormat="1">`;
  for (let k = 0; k < names.length; k++) {
    xml += stringCell(`${columnRef(k)}1`, names[k] ?? "", CELL_STYLE.header);
  }
  return `${xml}</row>`;
}
