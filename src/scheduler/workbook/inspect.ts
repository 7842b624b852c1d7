/**
 * Checks an uploaded workbook before any work is queued: the zip limits (xlsx, from the central
 * directory), a usable header row in row 1 whose columns fit the output, and at least one data
 * row without problems. Reads only that far, then closes the input.
 *
 * The header row is row 1 of the sheet (the first CSV record), never "the first non-empty row":
 * with blank rows above it, a sheet that lacks its header would have its first data row taken
 * as the header and that row would vanish from the output. Refusing costs the user one edit.
 */
import { Readable } from "node:stream";
import { BadInputError } from "../../shared/errors.ts";
import type { Cell } from "../../shared/schemas/cells.ts";
import { rowProblemList } from "../../shared/workbook/row-checks.ts";
import { cellText, columnLetter } from "../../shared/workbook/row-shape.ts";
import { checkOutputWidth, EXCEL_MAX_CELL_CHARS } from "./limits.ts";
import { type ReadRowsOptions, readWorkbookRows, type WorkbookInput } from "./read-rows.ts";

export interface InspectOptions extends ReadRowsOptions {
  /** Result columns the task will add (known from the spec), for the output width. @default 0 */
  resultColumns?: number | undefined;
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
  const long = names.findIndex((name) => name.length > EXCEL_MAX_CELL_CHARS);
  if (long !== -1) {
    throw invalid(
      `header in column ${columnLetter(long)} has more than ${EXCEL_MAX_CELL_CHARS.toLocaleString("en-US")} characters, Excel's limit for a cell`,
      { column: columnLetter(long) },
    );
  }
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
  input: WorkbookInput,
  options: InspectOptions,
): Promise<WorkbookSummary> {
  const rows = readWorkbookRows(input, options);
  try {
    const header = await rows.next();
    if (header.done) throw invalid("workbook is empty");
    const { n, cells, notes } = header.value;
    if (n !== 1) {
      throw invalid(
        `the header row must be row 1, but ${n === 2 ? "row 1 is" : `rows 1-${n - 1} are`} empty: delete the blank rows above the header (or add the header row if it is missing)`,
        { row: n },
      );
    }
    if (notes.length > 0) throw invalid(`header row: ${notes[0]}`);
    const headers = parseHeaderRow(cells);
    checkOutputWidth(headers.length, options.resultColumns ?? 0);
    const data = await rows.next();
    if (data.done) throw invalid("workbook has a header row but no data rows");
    const [problem] = rowProblemList(data.value, headers.length);
    if (problem) throw invalid(problem.problem, { row: data.value.n });
    return { headers };
  } finally {
    await rows.return(undefined);
    if (input instanceof Readable) input.destroy();
  }
}
