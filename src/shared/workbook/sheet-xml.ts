/**
 * Turns one worksheet's XML (`xl/worksheets/sheetN.xml`, as SAX events) into numbered rows of
 * cells.
 *
 * Why our own reader: exceljs's WorksheetReader reads a formula's cached result with
 * `parseFloat` unless the type is `str`, so `=VLOOKUP(…)` showing `#N/A` becomes NaN and
 * `=A1>0` becomes 1; it never applies a date format to a formula's result (`=TODAY()`); and it
 * keeps only the last run of a rich inline string.
 */
import { BadInputError } from "../errors.ts";
import type { Cell } from "../schemas/cells.ts";
import { columnIndex, columnLetter, EXCEL_MAX_CELL_CHARS } from "./row-shape.ts";
import { localName, type SaxEvent } from "./sax.ts";

export type { SaxEvent, SaxTag } from "./sax.ts";

/** What a sheet's cells refer to elsewhere in the workbook. */
export interface SheetContext {
  /** The plain text of shared string `index` (rich text joined), or null when there is none. */
  sharedString(index: number): string | null;
  /** Whether cell style `styleId` has a date/time number format. */
  isDateStyle(styleId: number): boolean;
  /** The workbook counts days from 1904 (old Mac Excel) instead of 1900. */
  date1904: boolean;
  /** Told the sheet's `<dimension ref>` (e.g. `A1:D500`) when it has one, before any row. */
  onDimension?: (ref: string) => void;
}

/** One `<row>`: its 1-based number in the sheet, its cells, and what the reader noticed. */
export interface SheetRow {
  n: number;
  cells: Cell[];
  /** Problems that make the row's values incomplete (a formula with no cached value). */
  notes: string[];
}

/** Excel's last column (XFD); a reference beyond it is a corrupt file, not a wide one. */
const MAX_COLUMNS = 16_384;
/** Text kept per cell: one more than Excel's limit, enough to know a cell is over it. */
const MAX_KEPT_CHARS = EXCEL_MAX_CELL_CHARS + 1;

/** Excel serial day number → Date (UTC), the same arithmetic exceljs uses when it writes. */
export function excelSerialToDate(serial: number, date1904: boolean): Date {
  return new Date(Math.round((serial - 25569 + (date1904 ? 1462 : 0)) * 86_400_000));
}

interface PendingCell {
  col: number;
  type: string | undefined;
  style: number | undefined;
  value: string | undefined;
  inline: string | undefined;
  /** The formula's text when the cell has one (`<f>`, possibly empty for a shared formula). */
  formula: string | undefined;
}

function columnOf(ref: string | undefined, next: number): number {
  const letters = ref ? columnIndex(ref) : -1;
  const col = letters >= 0 ? letters : next;
  // Also for cells without a reference: a row cannot grow past XFD by leaving them out.
  if (col >= MAX_COLUMNS) {
    throw new BadInputError(
      "WORKBOOK_INVALID",
      `cell reference ${ref ?? `after XFD (cell ${col + 1} of its row)`} is beyond Excel's last column (XFD)`,
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

/** Where a slice of a sheet's rows (../slices.ts) starts: the sheet row number before it. */
export interface SliceStart {
  afterRow: number;
}

/**
 * The reader's state machine, fed one XML event at a time by whichever tokenizer reads the
 * bytes (saxes below, or ./row-xml.ts's fast scan of a slice): both feed this one, so a row
 * means the same whichever read it. Finished rows collect in `rows` (the caller takes them);
 * `ended` turns true at `</sheetData>` (nothing after it is data).
 */
export class SheetRowReader {
  readonly rows: SheetRow[] = [];
  ended = false;
  readonly #ctx: SheetContext;
  // A slice is bare rows: already inside the sheet data, numbered on from the row before it.
  #inData: boolean;
  #row: SheetRow | undefined;
  #lastRow: number;
  #nextCol = 0;
  #cell: PendingCell | undefined;
  readonly #pending: PendingCell = {
    col: 0,
    type: undefined,
    style: undefined,
    value: undefined,
    inline: undefined,
    formula: undefined,
  };
  #inInline = false;
  #inPhonetic = false;
  #capturing = false;
  #text = "";

  constructor(ctx: SheetContext, slice?: SliceStart) {
    this.#ctx = ctx;
    this.#inData = slice !== undefined;
    this.#lastRow = slice?.afterRow ?? 0;
  }

  /** Whether text now is kept (a tokenizer may skip text that is not). */
  get capturing(): boolean {
    return this.#capturing;
  }

  text(value: string): void {
    if (this.#capturing && this.#text.length < MAX_KEPT_CHARS) this.#text += value;
  }

  /** An opening tag (`name` as written, prefix and all). */
  open(name: string, attributes: Readonly<Record<string, string | undefined>>): void {
    switch (localName(name)) {
      case "dimension":
        if (!this.#inData && attributes.ref) this.#ctx.onDimension?.(attributes.ref);
        break;
      case "sheetData":
        this.#inData = true;
        break;
      case "row":
        if (this.#inData) {
          const r = Number.parseInt(attributes.r ?? "", 10);
          this.#lastRow = Number.isInteger(r) && r > this.#lastRow ? r : this.#lastRow + 1;
          this.#row = { n: this.#lastRow, cells: [], notes: [] };
          this.#nextCol = 0;
        }
        break;
      case "c":
        if (this.#row) {
          const style = attributes.s === undefined ? Number.NaN : Number.parseInt(attributes.s, 10);
          // One pending cell, reused: a cell is over before the next one opens.
          const cell = this.#pending;
          cell.col = columnOf(attributes.r, this.#nextCol);
          cell.type = attributes.t;
          cell.style = Number.isNaN(style) ? undefined : style;
          cell.value = undefined;
          cell.inline = undefined;
          cell.formula = undefined;
          this.#cell = cell;
        }
        break;
      case "f":
        if (this.#cell) {
          this.#cell.formula = "";
          this.#capturing = true;
          this.#text = "";
        }
        break;
      case "v":
        if (this.#cell) {
          this.#capturing = true;
          this.#text = "";
        }
        break;
      case "is":
        if (this.#cell) {
          this.#inInline = true;
          this.#cell.inline = "";
        }
        break;
      case "rPh": // phonetic guide text (furigana) is not part of the value
        if (this.#inInline) this.#inPhonetic = true;
        break;
      case "t":
        if (this.#inInline && !this.#inPhonetic) {
          this.#capturing = true;
          this.#text = "";
        }
        break;
    }
  }

  /** A closing tag (also after a self-closing one). */
  close(name: string): void {
    const cell = this.#cell;
    switch (localName(name)) {
      case "f":
        if (cell && this.#capturing) cell.formula = this.#text;
        this.#capturing = false;
        break;
      case "v":
        if (cell && this.#capturing) cell.value = this.#text;
        this.#capturing = false;
        break;
      case "t":
        if (cell && this.#inInline && this.#capturing) {
          cell.inline = ((cell.inline ?? "") + this.#text).slice(0, MAX_KEPT_CHARS);
        }
        this.#capturing = false;
        break;
      case "rPh":
        this.#inPhonetic = false;
        break;
      case "is":
        this.#inInline = false;
        break;
      case "c": {
        const row = this.#row;
        if (row && cell) {
          row.cells[cell.col] = cellValue(cell, this.#ctx);
          if (cell.formula !== undefined && cell.value === undefined && cell.inline === undefined) {
            const shown = cell.formula ? ` (=${cell.formula.slice(0, 80)})` : "";
            row.notes.push(
              `cell ${columnLetter(cell.col)}${row.n} holds a formula with no calculated value${shown}: open and save the workbook in Excel or LibreOffice so its values are calculated`,
            );
          }
          this.#nextCol = cell.col + 1;
        }
        this.#cell = undefined;
        break;
      }
      case "row": {
        const row = this.#row;
        if (row) {
          // The holes left by sparse cells become explicit nulls.
          const cells = row.cells;
          for (let k = 0; k < cells.length; k++) if (cells[k] === undefined) cells[k] = null;
          this.rows.push(row);
          this.#row = undefined;
        }
        break;
      }
      case "sheetData":
        this.ended = true;
        break;
    }
  }
}

/**
 * Yields every `<row>` of the sheet: its number, its cells in column order (cell k is column k,
 * gaps are null, the array ends at the row's last cell) and notes. Rows with no cells are
 * yielded with [] (the caller decides what an empty row means). A formula with no cached value
 * gives null and a note naming the cell. Text is kept up to one character past Excel's cell
 * limit. Stops at `</sheetData>`: nothing after it is data. With `slice`, `events` are the rows
 * of a slice (no `<sheetData>` around them) and rows without an `r` count on from `afterRow`.
 */
export async function* sheetRows(
  events: AsyncIterable<readonly SaxEvent[]>,
  ctx: SheetContext,
  slice?: SliceStart,
): AsyncGenerator<SheetRow> {
  const reader = new SheetRowReader(ctx, slice);
  for await (const batch of events) {
    for (const event of batch) {
      if (event.eventType === "text") reader.text(event.value);
      else if (event.eventType === "opentag") reader.open(event.value.name, event.value.attributes);
      else reader.close(event.value.name);
      if (reader.rows.length > 0) {
        yield* reader.rows;
        reader.rows.length = 0;
      }
      if (reader.ended) return;
    }
  }
}
