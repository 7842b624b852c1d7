/**
 * What a workbook may cost us before any work is queued, and the pure checks that enforce it.
 * Zip limits are checked against the central directory (declared sizes) before a byte is
 * inflated, and again while inflating (a part that inflates past its declared size is refused).
 * Output limits are Excel's own: the output workbook must open where the input came from.
 */
import type { WorkbookLimits } from "../../shared/config.ts";
import { BadInputError } from "../../shared/errors.ts";
import type { TaskSpec } from "../../shared/schemas/tasks.ts";
import { columnLetter } from "../../shared/workbook/row-shape.ts";

/** Excel's last column is XFD: 16,384 columns. */
export const EXCEL_MAX_COLUMNS = 16_384;
/** Excel's last row; the output's header takes one of them. */
export const EXCEL_MAX_ROWS = 1_048_576;

// The limits and their defaults are defined with the settings that raise them.
export { DEFAULT_WORKBOOK_LIMITS, type WorkbookLimits } from "../../shared/config.ts";
// The cell limit also governs the worker's reading of slices, so it lives beside it.
export { EXCEL_MAX_CELL_CHARS } from "../../shared/workbook/row-shape.ts";

/** Parts smaller than this may compress as well as they like (a blank sheet is all ratio). */
export const RATIO_FLOOR_BYTES = 1024 * 1024;

const MIB = 1024 * 1024;

/** The setting that raises each limit, named in every refusal. */
export const LIMIT_SETTINGS = {
  maxSheetBytes: "SHARDFLEET_MAX_INFLATED_MB",
  maxPartBytes: "SHARDFLEET_MAX_SHARED_STRINGS_MB",
  maxCompressionRatio: "SHARDFLEET_MAX_COMPRESSION_RATIO",
  maxEntries: "SHARDFLEET_MAX_ZIP_ENTRIES",
  maxRows: "SHARDFLEET_MAX_ROWS",
} as const satisfies Record<keyof WorkbookLimits, string>;

function mb(bytes: number): string {
  return `${(bytes / MIB).toLocaleString("en-US", { maximumFractionDigits: 1 })} MiB`;
}

function tooLarge(message: string, limit: keyof WorkbookLimits, value: number): BadInputError {
  return new BadInputError("PAYLOAD_TOO_LARGE", message, {
    details: { limit: LIMIT_SETTINGS[limit], value },
  });
}

/** Refuses a zip with more entries than the limit (from its end record: nothing else read). */
export function checkEntryCount(entries: number, limits: WorkbookLimits): void {
  if (entries > limits.maxEntries) {
    throw tooLarge(
      `workbook has ${entries.toLocaleString("en-US")} zip entries, over the limit of ${limits.maxEntries.toLocaleString("en-US")} (${LIMIT_SETTINGS.maxEntries})`,
      "maxEntries",
      entries,
    );
  }
}

export interface DeclaredPart {
  name: string;
  compressedSize: number;
  uncompressedSize: number;
}

/**
 * Refuses a part whose declared inflated size or compression ratio is over the limits, before
 * it is inflated. `kind` says which size limit applies.
 */
export function checkDeclaredPart(
  part: DeclaredPart,
  kind: "sheet" | "part",
  limits: WorkbookLimits,
): void {
  const limit = kind === "sheet" ? "maxSheetBytes" : "maxPartBytes";
  const max = limits[limit];
  if (part.uncompressedSize > max) {
    throw tooLarge(
      `${part.name} inflates to ${mb(part.uncompressedSize)}, over the limit of ${mb(max)} (${LIMIT_SETTINGS[limit]})`,
      limit,
      part.uncompressedSize,
    );
  }
  if (part.uncompressedSize > RATIO_FLOOR_BYTES) {
    const ratio = part.uncompressedSize / Math.max(1, part.compressedSize);
    if (ratio > limits.maxCompressionRatio) {
      throw tooLarge(
        `${part.name} inflates ${Math.round(ratio)}-fold (${mb(part.compressedSize)} to ${mb(part.uncompressedSize)}), over the compression ratio limit of ${limits.maxCompressionRatio} (${LIMIT_SETTINGS.maxCompressionRatio}): a zip bomb?`,
        "maxCompressionRatio",
        ratio,
      );
    }
  }
}

/** The refusal for a part that inflates to more bytes than its zip entry declared. */
export function inflatedPastDeclared(name: string, declared: number): BadInputError {
  return new BadInputError(
    "PAYLOAD_TOO_LARGE",
    `${name} inflates past the ${declared.toLocaleString("en-US")} bytes its zip entry declares: a zip bomb?`,
    { details: { part: name, declared } },
  );
}

/** Refuses more data rows than the limit. */
export function checkRowCount(rows: number, limits: WorkbookLimits): void {
  if (rows > limits.maxRows) {
    throw tooLarge(
      `workbook has more than ${limits.maxRows.toLocaleString("en-US")} data rows, the limit (${LIMIT_SETTINGS.maxRows}${limits.maxRows === EXCEL_MAX_ROWS - 1 ? ", Excel's last row" : ""})`,
      "maxRows",
      rows,
    );
  }
}

/**
 * Refuses a header row whose columns, with the result columns and `error` after them, would
 * not fit in Excel's 16,384 columns — before any work is done, not at the merge.
 */
export function checkOutputWidth(inputColumns: number, resultColumns: number): void {
  const total = inputColumns + resultColumns + 1;
  if (total > EXCEL_MAX_COLUMNS) {
    throw new BadInputError(
      "WORKBOOK_INVALID",
      `the header row has ${inputColumns.toLocaleString("en-US")} columns; with ${resultColumns} result column${resultColumns === 1 ? "" : "s"} and the error column the output would need ${total.toLocaleString("en-US")}, over Excel's limit of ${EXCEL_MAX_COLUMNS.toLocaleString("en-US")} columns (${columnLetter(EXCEL_MAX_COLUMNS - 1)})`,
      {
        details: { limit: "excel-columns", max: EXCEL_MAX_COLUMNS, columns: total },
      },
    );
  }
}

/**
 * Result columns a task is known to add before it runs: http-enrich names them in `results`; a
 * transform plugin's columns appear only in its results, so they count as none here.
 */
export function knownResultColumns(task: TaskSpec): number {
  return task.name === "http-enrich" ? Object.keys(task.options.results).length : 0;
}
