/**
 * Streams the rows of one sheet of an xlsx workbook by random access: the zip's central
 * directory first (limits checked there, before anything is inflated), then the workbook,
 * relationships, shared strings and styles, and only then the sheet — whatever order the
 * producer wrote the entries in. Nothing inflated is ever written to disk.
 *
 * Memory: rows are never collected. What is held is the shared-string table (every distinct
 * text of the workbook, bounded by the part limit) and one flag per cell style.
 */
import type { Readable } from "node:stream";
import { BadInputError } from "../../shared/errors.ts";
import type { ByteSource } from "./byte-source.ts";
import {
  checkRowCount,
  DEFAULT_WORKBOOK_LIMITS,
  EXCEL_MAX_CELL_CHARS,
  type WorkbookLimits,
} from "./limits.ts";
import { saxBatches } from "./sax.ts";
import { type SheetContext, type SheetRow, sheetRows } from "./sheet-xml.ts";
import {
  readDateStyles,
  readRelationships,
  readSharedStrings,
  readWorkbookPart,
  type SheetEntry,
} from "./xlsx-parts.ts";
import { asWorkbookError, notXlsx, ZipArchive } from "./zip-archive.ts";

export interface XlsxRowsOptions {
  /** Sheet to read. @default the first visible sheet in workbook order */
  sheet?: string | undefined;
  signal?: AbortSignal | undefined;
  /** @default DEFAULT_WORKBOOK_LIMITS */
  limits?: WorkbookLimits | undefined;
}

/** The first visible sheet in workbook order (a hidden first sheet is usually a lookup table). */
function defaultSheet(sheets: readonly SheetEntry[]): SheetEntry | undefined {
  return sheets.find((s) => s.state === undefined || s.state === "visible") ?? sheets[0];
}

/** Data rows a `<dimension ref="A1:D500">` promises (its rows after the first). */
export function dimensionDataRows(ref: string): number | undefined {
  const m = /^\$?[A-Za-z]*\$?(\d+)(?::\$?[A-Za-z]*\$?(\d+))?$/.exec(ref.trim());
  if (!m?.[1]) return undefined;
  const first = Number(m[1]);
  const last = Number(m[2] ?? m[1]);
  return Math.max(0, last - first);
}

/**
 * Yields the rows of the chosen sheet (see `sheetRows`), then stops. Throws BadInputError:
 * WORKBOOK_INVALID for a file that is not a readable xlsx or a sheet that does not exist,
 * PAYLOAD_TOO_LARGE for a limit (entries, inflated size, ratio, rows by the sheet's dimension).
 * Closes `source` when it ends, fails or is closed early.
 */
export async function* readXlsxSheet(
  source: ByteSource,
  options: XlsxRowsOptions = {},
): AsyncGenerator<SheetRow> {
  const { signal } = options;
  const limits = options.limits ?? DEFAULT_WORKBOOK_LIMITS;
  const open: Readable[] = [];
  const onAbort = () => {
    for (const stream of open) stream.destroy(signal?.reason);
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  let archive: ZipArchive | undefined;
  try {
    signal?.throwIfAborted();
    archive = await ZipArchive.open(source, limits, signal);
    const zip = archive;
    const part = async <T>(
      name: string,
      read: (input: Readable) => Promise<T>,
    ): Promise<T | undefined> => {
      const stream = await zip.open(name, "part");
      if (!stream) return undefined;
      open.push(stream);
      try {
        return await read(stream);
      } finally {
        stream.destroy();
      }
    };

    const model = await part("xl/workbook.xml", readWorkbookPart);
    if (!model) throw notXlsx(new Error("no xl/workbook.xml"));
    const rels =
      (await part("xl/_rels/workbook.xml.rels", (s) => readRelationships(s))) ?? new Map();
    const wanted =
      options.sheet === undefined
        ? defaultSheet(model.sheets)
        : model.sheets.find((s) => s.name === options.sheet);
    if (!wanted) {
      if (options.sheet === undefined) return; // a workbook without sheets: empty
      const names = model.sheets.map((s) => s.name);
      throw new BadInputError(
        "WORKBOOK_INVALID",
        `sheet ${JSON.stringify(options.sheet)} not found (sheets: ${names.map((n) => JSON.stringify(n)).join(", ") || "none"})`,
        { details: { sheet: options.sheet, sheets: names } },
      );
    }
    const sheetPart =
      (wanted.rId && rels.get(wanted.rId)) ||
      `xl/worksheets/sheet${model.sheets.indexOf(wanted) + 1}.xml`;

    // Shared strings and styles before the sheet, whatever the entry order in the zip.
    const strings =
      (await part("xl/sharedStrings.xml", (s) => readSharedStrings(s, EXCEL_MAX_CELL_CHARS))) ?? [];
    const dateStyles = (await part("xl/styles.xml", readDateStyles)) ?? [];

    const sheet = await zip.open(sheetPart, "sheet");
    if (!sheet) throw notXlsx(new Error(`no ${sheetPart}`));
    open.push(sheet);
    const ctx: SheetContext = {
      sharedString(index) {
        // A reference to a missing shared string is a damaged file; null would lose data silently.
        if (index < 0 || index >= strings.length) {
          throw notXlsx(new Error(`shared string ${index} is missing`));
        }
        return strings[index] ?? null;
      },
      isDateStyle: (styleId) => dateStyles[styleId] === true,
      date1904: model.date1904,
      onDimension(ref) {
        const rows = dimensionDataRows(ref);
        if (rows !== undefined) checkRowCount(rows, limits);
      },
    };
    for await (const row of sheetRows(saxBatches(sheet), ctx)) {
      signal?.throwIfAborted();
      yield row;
    }
  } catch (err) {
    throw asWorkbookError(err, signal);
  } finally {
    signal?.removeEventListener("abort", onAbort);
    for (const stream of open) stream.destroy();
    archive?.close();
    await source.close();
  }
}
