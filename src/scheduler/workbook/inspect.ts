/**
 * Checks an uploaded workbook before any work is queued: it must have a usable header row and
 * at least one data row. Reads only that far, then closes the stream.
 */
import type { Readable } from "node:stream";
import { BadInputError } from "../../shared/errors.ts";
import type { Cell } from "../../shared/schemas/cells.ts";
import { readRows, type WorkbookFormat } from "./read-rows.ts";
import { cellText, columnLetter } from "./row-shape.ts";

export interface InspectOptions {
  format: WorkbookFormat;
  /** Sheet to read (xlsx only). @default the first visible sheet */
  sheet?: string | undefined;
  signal?: AbortSignal | undefined;
}

export interface WorkbookSummary {
  /** Header names in column order, trimmed; column k of every data row belongs to headers[k]. */
  headers: string[];
}

function invalid(message: string, details?: Record<string, unknown>): BadInputError {
  return new BadInputError("WORKBOOK_INVALID", message, { details });
}

/**
 * The header names from the header row: cells as trimmed text (numbers and dates in their
 * string form), empty cells after the last named one ignored. Throws BadInputError
 * WORKBOOK_INVALID for an empty name or a duplicate (compared exactly, after trimming).
 */
export function parseHeaderRow(cells: readonly Cell[]): string[] {
  const names = cells.map(cellText);
  while (names.length > 0 && names[names.length - 1] === "") names.pop();
  if (names.length === 0) throw invalid("workbook is empty");
  const firstColumn = new Map<string, number>();
  names.forEach((name, k) => {
    if (name === "") {
      throw invalid(`header in column ${columnLetter(k)} is empty`, { column: columnLetter(k) });
    }
    const earlier = firstColumn.get(name);
    if (earlier !== undefined) {
      throw invalid(
        `duplicate header ${JSON.stringify(name)} in columns ${columnLetter(earlier)} and ${columnLetter(k)}`,
        { header: name, columns: [columnLetter(earlier), columnLetter(k)] },
      );
    }
    firstColumn.set(name, k);
  });
  return names;
}

/**
 * Reads the header row and makes sure one data row follows. Throws BadInputError
 * WORKBOOK_INVALID: "file is not a readable xlsx workbook", "workbook is empty", "workbook has
 * a header row but no data rows", "header in column C is empty", "duplicate header …", or an
 * unknown sheet. Always destroys `input`, also when it returns early.
 */
export async function inspectWorkbook(
  input: Readable,
  options: InspectOptions,
): Promise<WorkbookSummary> {
  const rows = readRows(input, options);
  try {
    const header = await rows.next();
    if (header.done) throw invalid("workbook is empty");
    const headers = parseHeaderRow(header.value);
    const data = await rows.next();
    if (data.done) throw invalid("workbook has a header row but no data rows");
    return { headers };
  } finally {
    await rows.return(undefined);
    input.destroy();
  }
}
