/**
 * A workbook's preview for the console's upload page, read exactly as the intake reads it (the
 * same zip limits, the same header rule): the sheet names, the header row of the chosen sheet
 * and its first data rows. Nothing is queued or stored.
 */
import type { Readable } from "node:stream";
import type { WorkbookPreview } from "../../shared/contracts/console.ts";
import { BadInputError } from "../../shared/errors.ts";
import type { ByteSource } from "./byte-source.ts";
import { parseHeaderRow } from "./inspect.ts";
import { DEFAULT_WORKBOOK_LIMITS, type WorkbookLimits } from "./limits.ts";
import { readWorkbookRows, type WorkbookFormat } from "./read-rows.ts";
import { readWorkbookPart, type SheetEntry } from "./xlsx-parts.ts";
import { asWorkbookError, ZipArchive } from "./zip-archive.ts";

export interface PreviewOptions {
  format: WorkbookFormat;
  /** @default the first visible sheet, as the intake */
  sheet?: string | undefined;
  limits?: WorkbookLimits;
  /** Data rows to show. @default 5 */
  rows?: number;
  signal?: AbortSignal;
}

/** Sheets in workbook order (xlsx). */
async function sheetList(
  source: ByteSource,
  limits: WorkbookLimits,
  signal?: AbortSignal,
): Promise<SheetEntry[]> {
  const zip = await ZipArchive.open(source, limits, signal);
  let part: Readable | undefined;
  try {
    part = await zip.open("xl/workbook.xml", "part");
    if (!part) return [];
    return (await readWorkbookPart(part)).sheets;
  } catch (err) {
    throw asWorkbookError(err, signal);
  } finally {
    part?.destroy();
    zip.close();
  }
}

/** Reads the preview; BadInputError (4xx) for what the intake would refuse. Closes `source`. */
export async function previewWorkbook(
  source: ByteSource,
  options: PreviewOptions,
): Promise<WorkbookPreview> {
  const limits = options.limits ?? DEFAULT_WORKBOOK_LIMITS;
  const want = options.rows ?? 5;
  try {
    const sheets = options.format === "xlsx" ? await sheetList(source, limits, options.signal) : [];
    const rows = readWorkbookRows(source, {
      format: options.format,
      sheet: options.sheet,
      limits,
      signal: options.signal,
    });
    try {
      const header = await rows.next();
      if (header.done) throw new BadInputError("WORKBOOK_INVALID", "workbook is empty");
      if (header.value.n !== 1) {
        throw new BadInputError(
          "WORKBOOK_INVALID",
          "the header row must be row 1, but row 1 is empty: delete the blank rows above the header",
        );
      }
      const headers = parseHeaderRow(header.value.cells);
      const data: WorkbookPreview["rows"] = [];
      while (data.length < want) {
        const next = await rows.next();
        if (next.done) break;
        data.push(
          headers.map((_, k) => {
            const cell = next.value.cells[k] ?? null;
            return cell instanceof Date ? cell.toISOString() : cell;
          }),
        );
      }
      // The intake's default: the first visible sheet.
      const shown = sheets.find((s) => s.state === undefined || s.state === "visible") ?? sheets[0];
      const sheet = options.format === "csv" ? null : (options.sheet ?? shown?.name ?? null);
      return {
        format: options.format,
        sheets: sheets.map((s) => s.name),
        sheet,
        headers,
        rows: data,
      };
    } finally {
      await rows.return(undefined);
    }
  } finally {
    await source.close();
  }
}
