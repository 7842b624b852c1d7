/**
 * Turns one worksheet's XML (`xl/worksheets/sheetN.xml`, as SAX events) into rows of cells.
 *
 * Why not exceljs's own WorksheetReader rows: it reads a formula's cached result with
 * `parseFloat` unless the type is `str`, so `=VLOOKUP(…)` showing `#N/A` becomes NaN and
 * `=A1>0` becomes 1; it never applies a date format to a formula's result (`=TODAY()`); and it
 * keeps only the last run of a rich inline string. The zip, shared strings, styles and workbook
 * parts still come from exceljs's streaming WorkbookReader.
 */
import { BadInputError } from "../../shared/errors.ts";
import type { Cell } from "../../shared/schemas/cells.ts";
import { columnIndex } from "./row-shape.ts";

/** A tag as the SAX parser (saxes, via exceljs's parse-sax) reports it. */
export interface SaxTag {
  name: string;
  attributes: Record<string, string>;
}

export type SaxEvent =
  | { eventType: "opentag"; value: SaxTag }
  | { eventType: "closetag"; value: SaxTag }
  | { eventType: "text"; value: string };

/** What a sheet's cells refer to elsewhere in the workbook. */
export interface SheetContext {
  /** The plain text of shared string `index` (rich text joined), or null when there is none. */
  sharedString(index: number): string | null;
  /** Whether cell style `styleId` has a date/time number format. */
  isDateStyle(styleId: number): boolean;
  /** The workbook counts days from 1904 (old Mac Excel) instead of 1900. */
  date1904: boolean;
}

/** Excel's last column (XFD); a reference beyond it is a corrupt file, not a wide one. */
const MAX_COLUMNS = 16_384;

/** Excel serial day number → Date (UTC), the same arithmetic exceljs uses when it writes. */
export function excelSerialToDate(serial: number, date1904: boolean): Date {
  return new Date(Math.round((serial - 25569 + (date1904 ? 1462 : 0)) * 86_400_000));
}

/** Whether an Excel number format shows a date or time (exceljs's rule: y m d h s b outside quotes and brackets). */
export function isDateFormat(format: string | undefined): boolean {
  if (!format) return false;
  const bare = format.replace(/\[[^\]]*]/g, "").replace(/"[^"]*"/g, "");
  return /[ymdhMsb]/.test(bare);
}

interface PendingCell {
  col: number;
  type: string | undefined;
  style: number | undefined;
  value: string | undefined;
  inline: string | undefined;
}

function localName(name: string): string {
  // Some producers (the .NET OpenXML SDK) prefix every element: <x:c>, <x:v>.
  const colon = name.indexOf(":");
  return colon === -1 ? name : name.slice(colon + 1);
}

function columnOf(ref: string | undefined, next: number): number {
  if (!ref) return next;
  const letters = /^\$?([A-Za-z]+)/.exec(ref)?.[1];
  if (!letters) return next;
  const col = columnIndex(letters.toUpperCase());
  if (col >= MAX_COLUMNS) {
    throw new BadInputError(
      "WORKBOOK_INVALID",
      `cell reference ${ref} is beyond Excel's last column (XFD)`,
    );
  }
  return col;
}

function textOrNull(text: string | undefined): string | null {
  return text === undefined || text === "" ? null : text;
}

function cellValue(cell: PendingCell, ctx: SheetContext): Cell {
  const raw = cell.value;
  switch (cell.type) {
    case "s": {
      const index = raw === undefined ? Number.NaN : Number.parseInt(raw, 10);
      return Number.isNaN(index) ? null : textOrNull(ctx.sharedString(index) ?? undefined);
    }
    case "inlineStr":
      return textOrNull(cell.inline ?? raw);
    case "str": // a formula's text result
    case "e": // an error such as #N/A, from a literal or a formula: kept as its text
      return textOrNull(raw);
    case "b":
      if (raw === undefined) return null;
      return raw.trim() === "1" || raw.trim().toLowerCase() === "true";
    case "d": {
      if (raw === undefined) return null;
      const date = new Date(raw);
      return Number.isNaN(date.getTime()) ? raw : date;
    }
    default: {
      if (raw === undefined || raw.trim() === "") return null;
      const n = Number(raw);
      if (!Number.isFinite(n)) return raw;
      if (cell.style !== undefined && ctx.isDateStyle(cell.style)) {
        return excelSerialToDate(n, ctx.date1904);
      }
      return n;
    }
  }
}

/**
 * Yields every `<row>` of the sheet as its cells in column order: cell k is column k, gaps are
 * null, and the array ends at the row's last cell. Rows with no cells are yielded as [] (the
 * caller decides what an empty row means). Stops at `</sheetData>`: nothing after it is data.
 */
export async function* sheetRows(
  events: AsyncIterable<readonly SaxEvent[]>,
  ctx: SheetContext,
): AsyncGenerator<Cell[]> {
  let inData = false;
  let row: Cell[] | undefined;
  let nextCol = 0;
  let cell: PendingCell | undefined;
  let inInline = false;
  let inPhonetic = false;
  let capturing = false;
  let text = "";

  for await (const batch of events) {
    for (const event of batch) {
      if (event.eventType === "text") {
        if (capturing) text += event.value;
        continue;
      }
      const name = localName(event.value.name);
      if (event.eventType === "opentag") {
        switch (name) {
          case "sheetData":
            inData = true;
            break;
          case "row":
            if (inData) {
              row = [];
              nextCol = 0;
            }
            break;
          case "c":
            if (row) {
              const attrs = event.value.attributes;
              const style = attrs.s === undefined ? Number.NaN : Number.parseInt(attrs.s, 10);
              cell = {
                col: columnOf(attrs.r, nextCol),
                type: attrs.t,
                style: Number.isNaN(style) ? undefined : style,
                value: undefined,
                inline: undefined,
              };
            }
            break;
          case "v":
            if (cell) {
              capturing = true;
              text = "";
            }
            break;
          case "is":
            if (cell) {
              inInline = true;
              cell.inline = "";
            }
            break;
          case "rPh": // phonetic guide text (furigana) is not part of the value
            if (inInline) inPhonetic = true;
            break;
          case "t":
            if (inInline && !inPhonetic) {
              capturing = true;
              text = "";
            }
            break;
        }
      } else {
        switch (name) {
          case "v":
            if (cell && capturing) cell.value = text;
            capturing = false;
            break;
          case "t":
            if (cell && inInline && capturing) cell.inline = (cell.inline ?? "") + text;
            capturing = false;
            break;
          case "rPh":
            inPhonetic = false;
            break;
          case "is":
            inInline = false;
            break;
          case "c":
            if (row && cell) {
              row[cell.col] = cellValue(cell, ctx);
              nextCol = cell.col + 1;
            }
            cell = undefined;
            break;
          case "row":
            if (row) {
              // Array.from turns the holes left by sparse cells into explicit nulls.
              const dense = Array.from(row, (c) => c ?? null);
              row = undefined;
              yield dense;
            }
            break;
          case "sheetData":
            return;
        }
      }
    }
  }
}
