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
import { saxBatches } from "../../shared/workbook/sax.ts";
import { readSharedStrings } from "../../shared/workbook/shared-strings.ts";
import { type SheetContext, type SheetRow, sheetRows } from "../../shared/workbook/sheet-xml.ts";
import type { ByteSource } from "./byte-source.ts";
import {
  checkRowCount,
  DEFAULT_WORKBOOK_LIMITS,
  EXCEL_MAX_CELL_CHARS,
  type WorkbookLimits,
} from "./limits.ts";
import {
  readDateStyles,
  readRelationships,
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

/** An xlsx workbook opened on its chosen sheet, for the splitter to cut it without parsing. */
export interface OpenedSheet {
  /** The workbook counts days from 1904. */
  date1904: boolean;
  /** For each cell style (`s`), whether its number format shows a date. */
  dateStyles: boolean[];
  /** The zip entry of the sheet. */
  sheetPart: string;
  /** Whether the workbook has a shared-string table. */
  hasSharedStrings: boolean;
  /** The inflated shared-string table (part limits applied); undefined when there is none. */
  openSharedStrings(): Promise<Readable | undefined>;
  /** The inflated sheet XML (sheet limits applied). */
  openSheet(): Promise<Readable>;
  /** Closes every stream opened here, the zip and the source. */
  close(): Promise<void>;
}

/**
 * Opens the chosen sheet of an xlsx workbook (see `readXlsxSheet` for the choice and the
 * errors); undefined for a workbook without sheets when none was asked for.
 */
export async function openXlsxSheet(
  source: ByteSource,
  options: XlsxRowsOptions = {},
): Promise<OpenedSheet | undefined> {
  const { signal } = options;
  const limits = options.limits ?? DEFAULT_WORKBOOK_LIMITS;
  const open: Readable[] = [];
  const onAbort = () => {
    for (const stream of open) stream.destroy(signal?.reason);
  };
  let archive: ZipArchive | undefined;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    signal?.removeEventListener("abort", onAbort);
    for (const stream of open) stream.destroy();
    archive?.close();
    await source.close();
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    signal?.throwIfAborted();
    archive = await ZipArchive.open(source, limits, signal);
    const zip = archive;
    const entry = async (name: string, kind: "sheet" | "part") => {
      const stream = await zip.open(name, kind);
      if (stream) open.push(stream);
      return stream;
    };
    const part = async <T>(
      name: string,
      read: (input: Readable) => Promise<T>,
    ): Promise<T | undefined> => {
      const stream = await entry(name, "part");
      if (!stream) return undefined;
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
      if (options.sheet === undefined) {
        await close(); // a workbook without sheets: empty
        return undefined;
      }
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
    const dateStyles = (await part("xl/styles.xml", readDateStyles)) ?? [];
    return {
      date1904: model.date1904,
      dateStyles,
      sheetPart,
      hasSharedStrings: zip.has(SHARED_STRINGS_PART),
      openSharedStrings: () => entry(SHARED_STRINGS_PART, "part"),
      async openSheet() {
        const sheet = await entry(sheetPart, "sheet");
        if (!sheet) throw notXlsx(new Error(`no ${sheetPart}`));
        return sheet;
      },
      close,
    };
  } catch (err) {
    await close();
    throw asWorkbookError(err, signal);
  }
}

const SHARED_STRINGS_PART = "xl/sharedStrings.xml";

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
  let opened: OpenedSheet | undefined;
  try {
    opened = await openXlsxSheet(source, options);
    if (!opened) return; // a workbook without sheets: empty
    // Shared strings before the sheet, whatever the entry order in the zip.
    const sst = await opened.openSharedStrings();
    const strings = sst ? await readSharedStrings(sst, EXCEL_MAX_CELL_CHARS) : [];
    sst?.destroy();
    const { dateStyles, date1904 } = opened;
    const sheet = await opened.openSheet();
    const ctx: SheetContext = {
      sharedString(index) {
        // A reference to a missing shared string is a damaged file; null would lose data silently.
        if (index < 0 || index >= strings.length) {
          throw notXlsx(new Error(`shared string ${index} is missing`));
        }
        return strings[index] ?? null;
      },
      isDateStyle: (styleId) => dateStyles[styleId] === true,
      date1904,
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
    await opened?.close();
  }
}
