/**
 * Reads a workbook (xlsx or csv) as a stream of rows, never holding it whole in memory.
 *
 * Cells keep their meaning (xlsx): numbers stay numbers; date-formatted cells, including
 * formula results, become Dates (UTC, as exceljs writes them); formulas give their cached
 * result; rich text becomes its plain text; a hyperlink gives its shown text; errors such as
 * `#N/A` give that string; booleans stay booleans. Empty cells (and empty strings) are null and
 * rows are padded so that cell k is column k. CSV values are strings (see csv-rows.ts).
 *
 * Rows with no non-empty cell are skipped: they carry no work, and skipping them here means the
 * header is the first non-empty row and inspect, the splitter and the merger agree on which
 * rows exist. Trailing empty cells are not trimmed; callers fit rows to the header width.
 */
import type { Readable } from "node:stream";
import type { Cell } from "../../shared/schemas/cells.ts";
import { readCsvRows } from "./csv-rows.ts";
import { isEmptyRow } from "./row-shape.ts";
import { readXlsxRows } from "./xlsx-rows.ts";

export type WorkbookFormat = "xlsx" | "csv";

/** The media type of an xlsx workbook (uploads, the result, the cost report download). */
export const XLSX_CONTENT_TYPE =
  "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

export interface ReadRowsOptions {
  format: WorkbookFormat;
  /** Sheet to read (xlsx only). @default the first visible sheet in workbook order */
  sheet?: string | undefined;
  /** Aborts reading: the generator throws the signal's reason and destroys the input. */
  signal?: AbortSignal | undefined;
}

/**
 * Yields each non-empty row's cells in column order; the first row yielded is the header row.
 * Throws BadInputError WORKBOOK_INVALID (422) naming the problem for an unreadable file or an
 * unknown sheet. Owns `input`: it is destroyed when the generator finishes, fails or is closed
 * early (`return()`, `break`), so a caller may stop after a few rows of a large file.
 */
export async function* readRows(input: Readable, options: ReadRowsOptions): AsyncGenerator<Cell[]> {
  const rows =
    options.format === "csv"
      ? readCsvRows(input, { signal: options.signal })
      : readXlsxRows(input, { sheet: options.sheet, signal: options.signal });
  for await (const row of rows) {
    if (!isEmptyRow(row)) yield row;
  }
}
