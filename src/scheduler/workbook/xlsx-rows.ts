/**
 * Streams the rows of one sheet of an xlsx workbook, using exceljs's streaming WorkbookReader
 * for the zip, shared strings, styles and workbook parts, and `sheetRows` for the sheet itself.
 *
 * Memory: rows are never collected. What exceljs must hold is the shared-string table (every
 * distinct text of the workbook) and the style table. When a sheet comes before the shared
 * strings in the zip (Excel and exceljs both write it so), exceljs spools the sheet to a
 * temporary file and reads it back after the zip ends; that costs disk, not memory, and means
 * the whole input is read before the first row appears.
 *
 * One leak remains: a workbook with sheets both before and after its shared strings, read from
 * a sheet after them, leaves the earlier sheets' temporary files until the process exits (tmp's
 * graceful cleanup). No common producer writes that order.
 *
 * Hangs: exceljs pipes the input into its unzipper and never hears of the input failing, and a
 * corrupt deflate stream or an empty input leaves its iterator pending forever. So every wait
 * on exceljs races a failure signal fed by the input's errors, the unzipper's errors (caught by
 * wrapping `pipe`), the input ending with no bytes, and the caller's AbortSignal.
 */
import { ReadStream } from "node:fs";
import { createRequire } from "node:module";
import { type Readable, Transform, type TransformCallback } from "node:stream";
import ExcelJS from "exceljs";
import { BadInputError, ShardfleetError } from "../../shared/errors.ts";
import type { Cell } from "../../shared/schemas/cells.ts";
import { isDateFormat, type SaxEvent, type SheetContext, sheetRows } from "./sheet-xml.ts";

const require = createRequire(import.meta.url);
/** exceljs's SAX wrapper (saxes, events batched per chunk); exceljs 4.4 has no `exports` map. */
const parseSax = require("exceljs/lib/utils/parse-sax.js") as (
  input: AsyncIterable<unknown>,
) => AsyncIterable<SaxEvent[]>;

const NOT_XLSX = "file is not a readable xlsx workbook";

/** The parts of exceljs's WorkbookReader this module relies on (present in 4.4, untyped). */
interface ReaderInternals {
  parse(): AsyncGenerator<{ eventType: string; value: unknown }>;
  model?: { sheets?: Array<{ name: string; rId?: string; state?: string }> };
  workbookRels?: Array<{ Id?: string; Target?: string }>;
  properties?: { model?: { date1904?: boolean } };
  sharedStrings?: Array<string | { richText: Array<{ text: string | null }> } | null>;
  styles: { getStyleModel(id: number): { numFmt?: string } | null };
}

interface WorksheetInternals {
  /** The sheetId from workbook.xml when exceljs matched the part, else the part's file number. */
  id: number | string;
  name: string;
  /** A zip entry (async generator) or, when spooled, an fs.ReadStream of a temporary file. */
  iterator: AsyncIterable<unknown>;
}

export interface XlsxRowsOptions {
  /** Sheet to read. @default the first visible sheet in workbook order */
  sheet?: string | undefined;
  signal?: AbortSignal | undefined;
}

function notXlsx(cause?: unknown): BadInputError {
  return new BadInputError("WORKBOOK_INVALID", NOT_XLSX, { cause });
}

/** Passes bytes through, counts them, and reports the stream exceljs pipes it into. */
class Feed extends Transform {
  bytes = 0;
  constructor(private readonly onPipe: (dest: NodeJS.WritableStream) => void) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    cb(null, chunk);
  }
  override pipe<T extends NodeJS.WritableStream>(dest: T, options?: { end?: boolean }): T {
    this.onPipe(dest);
    return super.pipe(dest, options);
  }
}

/**
 * unzipper's Parse emits "end" by hand as soon as its writable side finishes, even while entries
 * it already pushed sit unread in its (paused) readable buffer. exceljs stops iterating at that
 * "end", so when the tail of a zip is parsed while exceljs is busy (spooling a sheet), the
 * entries after it — shared strings, styles, workbook.xml — are silently lost. Turn that early
 * "end" into end-of-stream (`push(null)`), so the real "end" comes once every entry was read.
 */
function endOnlyWhenRead(zip: Readable): void {
  const emit = zip.emit;
  zip.emit = function (this: Readable, event: string | symbol, ...args: unknown[]): boolean {
    if (event === "end" && !this.readableEnded) {
      this.push(null);
      return true;
    }
    return emit.call(this, event, ...args);
  } as Readable["emit"];
}

/**
 * The first failure of a read, which every wait on exceljs races. Not a long-lived promise fed to
 * Promise.race: each race would leave a reaction on it that keeps its result — a batch of SAX
 * events — alive for the rest of the read (1 GB for 200,000 rows).
 */
class Failure {
  #failed = false;
  #error: unknown;
  readonly #listeners = new Set<(err: unknown) => void>();

  get failed(): boolean {
    return this.#failed;
  }

  fail(err: unknown): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#error = err;
    for (const listener of this.#listeners) listener(err);
    this.#listeners.clear();
  }

  /** Settles like `promise`, or rejects with the failure if that comes first. */
  race<T>(promise: Promise<T>): Promise<T> {
    if (this.#failed) {
      promise.catch(() => {});
      return Promise.reject(this.#error);
    }
    return new Promise<T>((resolve, reject) => {
      this.#listeners.add(reject);
      promise.then(
        (value) => {
          this.#listeners.delete(reject);
          resolve(value);
        },
        (err: unknown) => {
          this.#listeners.delete(reject);
          reject(err);
        },
      );
    });
  }
}

/** Wraps an async iterable so that each step also loses to `failure`. */
async function* guarded<T>(source: AsyncIterable<T>, failure: Failure): AsyncGenerator<T> {
  const it = source[Symbol.asyncIterator]();
  let finished = false;
  try {
    for (;;) {
      const step = await failure.race(it.next());
      if (step.done) {
        finished = true;
        return;
      }
      yield step.value;
    }
  } finally {
    // Not awaited: after a failure the source may be stuck in a step that will never settle.
    if (!finished) it.return?.()?.catch(() => {});
  }
}

/**
 * The sheet's name. exceljs names a sheet only when its relationship target is written relative
 * (`worksheets/sheet1.xml`); openpyxl and others write `/xl/worksheets/sheet1.xml`, which
 * exceljs leaves as "Sheet1". Resolve those through the same tables ourselves.
 */
function nameOf(sheet: WorksheetInternals, reader: ReaderInternals): string {
  if (typeof sheet.id === "number") return sheet.name;
  const part = `worksheets/sheet${sheet.id}.xml`;
  const rel = reader.workbookRels?.find((r) => r.Target?.replace(/^\/?(xl\/)?/, "") === part);
  const entry = rel && reader.model?.sheets?.find((s) => s.rId === rel.Id);
  return entry?.name ?? sheet.name;
}

/** The first visible sheet in workbook order (a hidden first sheet is usually a lookup table). */
function defaultSheet(reader: ReaderInternals): string | undefined {
  const sheets = reader.model?.sheets ?? [];
  return (sheets.find((s) => s.state === undefined || s.state === "visible") ?? sheets[0])?.name;
}

function plainText(entry: NonNullable<ReaderInternals["sharedStrings"]>[number]): string | null {
  if (entry === null || entry === undefined) return null;
  if (typeof entry === "string") return entry;
  return entry.richText.map((run) => run.text ?? "").join("");
}

function contextOf(reader: ReaderInternals): SheetContext {
  const dateStyles = new Map<number, boolean>();
  return {
    sharedString(index) {
      // A reference to a missing shared string is a damaged file; null would lose data silently.
      if (!reader.sharedStrings || index >= reader.sharedStrings.length) {
        throw notXlsx(new Error(`shared string ${index} is missing`));
      }
      return plainText(reader.sharedStrings[index] ?? null);
    },
    isDateStyle(styleId) {
      let known = dateStyles.get(styleId);
      if (known === undefined) {
        known = isDateFormat(reader.styles.getStyleModel(styleId)?.numFmt);
        dateStyles.set(styleId, known);
      }
      return known;
    },
    date1904: reader.properties?.model?.date1904 === true,
  };
}

/**
 * Yields the raw rows of the chosen sheet (see `sheetRows`), then stops. Throws BadInputError
 * WORKBOOK_INVALID for a file that is not a readable xlsx or a sheet that does not exist.
 * Owns `input`: it is destroyed when the generator ends, fails or is closed early.
 */
export async function* readXlsxRows(
  input: Readable,
  options: XlsxRowsOptions = {},
): AsyncGenerator<Cell[]> {
  const { signal } = options;
  const failure = new Failure();
  const feed = new Feed((zip) => {
    (zip as unknown as NodeJS.EventEmitter).on("error", (err: unknown) =>
      failure.fail(notXlsx(err)),
    );
    endOnlyWhenRead(zip as unknown as Readable);
  });
  let closing = false;
  const onInputError = (err: unknown) => failure.fail(err);
  const onInputClose = () => {
    if (!closing && !input.readableEnded) {
      failure.fail(new Error("the workbook stream closed before its end"));
    }
  };
  const onAbort = () => failure.fail(signal?.reason);
  input.on("error", onInputError);
  input.on("close", onInputClose);
  feed.on("end", () => {
    if (feed.bytes === 0) failure.fail(notXlsx());
  });
  signal?.addEventListener("abort", onAbort, { once: true });
  if (signal?.aborted) onAbort();
  input.pipe(feed);

  const reader = new ExcelJS.stream.xlsx.WorkbookReader(feed, {
    sharedStrings: "cache",
    hyperlinks: "ignore",
    styles: "cache",
    worksheets: "emit",
    entries: "ignore",
  }) as unknown as ReaderInternals;
  const events = reader.parse();
  let spooled = false;
  let found = false;
  const seen: string[] = [];

  try {
    for (;;) {
      let step: IteratorResult<{ eventType: string; value: unknown }>;
      try {
        step = await failure.race(events.next());
      } catch (err) {
        throw err instanceof ShardfleetError || failure.failed ? err : notXlsx(err);
      }
      if (step.done) break;
      if (step.value.eventType !== "worksheet") continue;
      const sheet = step.value.value as WorksheetInternals;
      // A spooled sheet is read from a temporary file that exceljs deletes only when its
      // iteration resumes: remember to drain the generator instead of abandoning it.
      spooled = sheet.iterator instanceof ReadStream;
      const name = nameOf(sheet, reader);
      seen.push(name);
      const wanted = options.sheet ?? defaultSheet(reader) ?? name;
      if (name !== wanted) {
        if (sheet.iterator instanceof ReadStream) sheet.iterator.destroy();
        continue;
      }
      found = true;
      const rows = sheetRows(
        guarded(parseSax(guarded(sheet.iterator, failure)), failure),
        contextOf(reader),
      );
      try {
        for await (const row of rows) {
          signal?.throwIfAborted();
          yield row;
        }
      } catch (err) {
        throw err instanceof ShardfleetError || failure.failed ? err : notXlsx(err);
      }
      return;
    }
    if (!found) {
      if (options.sheet !== undefined) {
        const names = reader.model?.sheets?.map((s) => s.name) ?? seen;
        throw new BadInputError(
          "WORKBOOK_INVALID",
          `sheet ${JSON.stringify(options.sheet)} not found (sheets: ${names.map((n) => JSON.stringify(n)).join(", ") || "none"})`,
          { details: { sheet: options.sheet, sheets: names } },
        );
      }
      if (!reader.model) throw notXlsx();
    }
  } finally {
    closing = true;
    signal?.removeEventListener("abort", onAbort);
    if (spooled) {
      // The zip is done; what is left is local temporary files, so this cannot hang. Resume
      // to the end so exceljs deletes each one, closing the unread ones first.
      try {
        for await (const rest of drain(events)) {
          const iterator = (rest as WorksheetInternals | undefined)?.iterator;
          if (iterator instanceof ReadStream) iterator.destroy();
        }
      } catch {
        // Cleanup only: the caller already has its rows or its error.
      }
    } else {
      events.return(undefined).catch(() => {});
    }
    input.off("error", onInputError);
    input.off("close", onInputClose);
    // Keep a late error from a destroyed source from becoming an uncaught exception.
    input.on("error", () => {});
    feed.on("error", () => {});
    input.unpipe(feed);
    input.destroy();
    feed.destroy();
  }
}

async function* drain(
  events: AsyncGenerator<{ eventType: string; value: unknown }>,
): AsyncGenerator<unknown> {
  for (;;) {
    const step = await events.next();
    if (step.done) return;
    if (step.value.eventType === "worksheet") yield step.value.value;
  }
}
