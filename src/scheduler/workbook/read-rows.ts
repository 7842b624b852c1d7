/**
 * Reads a workbook (xlsx or csv) as a stream of rows, never holding it whole in memory.
 *
 * Cells keep their meaning (xlsx): numbers stay numbers; date-formatted cells, including
 * formula results, become Dates (UTC, as exceljs writes them); formulas give their cached
 * result (one without a cached value gives null and a note naming the cell); rich text becomes
 * its plain text; a hyperlink gives its shown text; errors such as `#N/A` give that string;
 * booleans stay booleans. Empty cells (and empty strings) are null and rows are padded so that
 * cell k is column k. CSV cells are typed like xlsx ones (see csv-values.ts) unless the caller
 * asks for text.
 *
 * Rows with no non-empty cell (and no note) are skipped: they carry no work. Each row keeps its
 * 1-based number in the sheet (the CSV record number), so callers can tell a header in row 1
 * from one after blank rows and name the row of a problem. Trailing empty cells are not
 * trimmed; callers fit rows to the header width.
 */
import type { Cell } from "../../shared/schemas/cells.ts";
import { isEmptyRow } from "../../shared/workbook/row-shape.ts";
import type { ByteSource } from "./byte-source.ts";
import { readCsvRows } from "./csv-rows.ts";
import { type CsvValues, typeCsvCell } from "./csv-values.ts";
import type { WorkbookLimits } from "./limits.ts";
import { readXlsxSheet } from "./xlsx-rows.ts";

export type WorkbookFormat = "xlsx" | "csv";

/** The media type of an xlsx workbook (uploads, the result, the cost report download). */
export const XLSX_CONTENT_TYPE =
  "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/**
 * Where a workbook's bytes come from: random access (an S3 object by ranged GETs, a file), so an
 * xlsx is read from its central directory. A caller holding only a stream spools it first.
 */
export type WorkbookInput = ByteSource;

export interface ReadRowsOptions {
  format: WorkbookFormat;
  /** Sheet to read (xlsx only). @default the first visible sheet in workbook order */
  sheet?: string | undefined;
  /** Aborts reading: the generator throws the signal's reason and destroys the input. */
  signal?: AbortSignal | undefined;
  /** Zip and size limits (xlsx). @default DEFAULT_WORKBOOK_LIMITS */
  limits?: WorkbookLimits | undefined;
  /** CSV cells typed like xlsx ones, or all kept as text. @default "typed" */
  csvValues?: CsvValues | undefined;
}

/** One non-empty row: its 1-based number in the sheet, its cells, what the reader noticed. */
export interface WorkbookRow {
  n: number;
  cells: Cell[];
  /** Problems with the row's values found while reading (a formula with no cached value). */
  notes: string[];
}

async function* rawRows(
  input: WorkbookInput,
  options: ReadRowsOptions,
): AsyncGenerator<WorkbookRow> {
  if (options.format === "csv") {
    const stream = input.read(0, input.size);
    try {
      let n = 0;
      const typed = options.csvValues !== "text";
      for await (const fields of readCsvRows(stream, { signal: options.signal })) {
        n++;
        yield { n, cells: typed ? fields.map(typeCsvCell) : fields, notes: [] };
      }
    } finally {
      stream.destroy();
      await input.close();
    }
    return;
  }
  yield* readXlsxSheet(input, options);
}

/**
 * Yields each non-empty row; the first row yielded is the header row. Throws BadInputError
 * WORKBOOK_INVALID (422) naming the problem for an unreadable file or an unknown sheet, and
 * PAYLOAD_TOO_LARGE (413) for a zip limit. Owns `input`: it is destroyed (closed) when the
 * generator finishes, fails or is closed early (`return()`, `break`).
 */
export async function* readWorkbookRows(
  input: WorkbookInput,
  options: ReadRowsOptions,
): AsyncGenerator<WorkbookRow> {
  for await (const row of rawRows(input, options)) {
    if (!isEmptyRow(row.cells) || row.notes.length > 0) yield row;
  }
}

/** The cells of each non-empty row (see `readWorkbookRows`). */
export async function* readRows(
  input: WorkbookInput,
  options: ReadRowsOptions,
): AsyncGenerator<Cell[]> {
  for await (const row of readWorkbookRows(input, options)) yield row.cells;
}
