/**
 * The splitter: streams an operation's input workbook once, writes each shard's rows to S3 as
 * a slice, and puts one message per shard on the work queue as the slices land.
 *
 * An xlsx workbook is cut, not parsed: its sheet XML is inflated and cut at row boundaries
 * (./workbook/sheet-slicer.ts) into slices of raw `<row>` XML (`keys.shardSheetSlice`); the
 * shared strings are stored once (`keys.sharedStrings`) with what else the cells need (date
 * styles, 1904 dates: `keys.sliceContext`), and each worker parses its own slice
 * (src/shared/slices.ts). Only the header row is parsed here. A CSV file is read row by row and
 * written as NDJSON slices (`keys.shardInput`).
 *
 * Row identity: every data row gets `i`, its 0-based index among the data rows (fully empty rows
 * are skipped; for xlsx, a row is data when the scan finds a value, formula or inline string in
 * it, see sheet-slicer.ts). Results carry `i`, so the merger can
 * de-duplicate and order them. Each row is fitted to the header: missing cells are null; cells
 * beyond the last header have no column to go to, so they are left out of the task's input and
 * the row carries a note saying so (`n`, its error in the output) — never dropped silently. The
 * same holds for text cut to Excel's cell limit and for a formula with no cached value (for xlsx,
 * the worker's reading of the slice applies these, src/shared/slices.ts).
 *
 * The workbook is read from S3 by random access (ranged GETs through its central directory),
 * with the same zip limits as at submission; more data rows than `limits.maxRows` fail the
 * split.
 *
 * Crash safety: slices are rewritten identically by a re-run (same input, same boundaries), and
 * a shard's message goes out only after its slice exists, so a worker never receives a shard
 * whose slice is missing. An xlsx split that stopped part-way (a lost lease, a crash) resumes
 * after the last of its slices 0, 1, … that exist (./split-resume.ts): those are handed over
 * again as they are and the sheet XML before them is inflated but not scanned.
 */
import { Readable } from "node:stream";
import { type Clock, systemClock } from "../shared/clock.ts";
import { BadInputError } from "../shared/errors.ts";
import { keys, shardIdFor } from "../shared/keys.ts";
import type { Logger } from "../shared/logger.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import { encodeCell, type InputRow } from "../shared/schemas/cells.ts";
import type { Manifest, ShardRange } from "../shared/schemas/operation.ts";
import type { ShardMessage } from "../shared/schemas/shard.ts";
import { type SliceContext, sliceContextSchema } from "../shared/schemas/slice.ts";
import { type ShardQueue, SQS_BATCH_MAX } from "../shared/shard-queue.ts";
import { cutLongCells, rowProblems } from "../shared/workbook/row-checks.ts";
import { fitRow, isEmptyRow } from "../shared/workbook/row-shape.ts";
import { saxBatches } from "../shared/workbook/sax.ts";
import { readSharedStrings } from "../shared/workbook/shared-strings.ts";
import { type SheetContext, sheetRows } from "../shared/workbook/sheet-xml.ts";
import { findResumePoint, type ResumePoint, sliceMarkMetadata } from "./split-resume.ts";
import { type ByteSource, objectByteSource } from "./workbook/byte-source.ts";
import { parseHeaderRow } from "./workbook/inspect.ts";
import {
  checkRowCount,
  DEFAULT_WORKBOOK_LIMITS,
  EXCEL_MAX_CELL_CHARS,
  type WorkbookLimits,
} from "./workbook/limits.ts";
import { readWorkbookRows } from "./workbook/read-rows.ts";
import { cutSheet, sliceDocument } from "./workbook/sheet-slicer.ts";
import { dimensionDataRows, type OpenedSheet, openXlsxSheet } from "./workbook/xlsx-rows.ts";
import { asWorkbookError, notXlsx } from "./workbook/zip-archive.ts";

export const NDJSON_CONTENT_TYPE = "application/x-ndjson";
const XML_CONTENT_TYPE = "application/xml";

/**
 * The shards of `rows` data rows: consecutive [start, end) ranges of `shardSize` rows (the last
 * may be shorter), ids from `shardIdFor(k)`. Covers [0, rows) exactly once; [] for 0 rows.
 */
export function planShards(rows: number, shardSize: number): ShardRange[] {
  if (!Number.isInteger(rows) || rows < 0) throw new RangeError(`rows must be >= 0, got ${rows}`);
  if (!Number.isInteger(shardSize) || shardSize < 1) {
    throw new RangeError(`shardSize must be >= 1, got ${shardSize}`);
  }
  const shards: ShardRange[] = [];
  for (let k = 0, start = 0; start < rows; k++, start += shardSize) {
    shards.push({ id: shardIdFor(k), start, end: Math.min(start + shardSize, rows) });
  }
  return shards;
}

function sameHeaders(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((h, k) => h === b[k]);
}

export interface SplitterDeps {
  store: ObjectStore;
  /** Where shard messages go: the scheduler's dispatcher (fair share), not SQS directly. */
  queue: Pick<ShardQueue, "sendShards">;
  logger: Logger;
  /** @default systemClock */
  clock?: Clock;
}

export interface SplitOptions {
  manifest: Manifest;
  workQueueUrl: string;
  signal?: AbortSignal;
  /** Zip, size and row limits. @default DEFAULT_WORKBOOK_LIMITS */
  limits?: WorkbookLimits;
  /**
   * Queue a message per shard. Off for an operation cancelled before its split: only the slices
   * are needed then (its partial output lists every input row). @default true
   */
  enqueue?: boolean;
}

export interface SplitResult {
  rows: number;
  shards: ShardRange[];
  /** The header row as read now (the same check as at submission). */
  headers: string[];
}

/**
 * Splits the operation's input into shard slices and queues one message per shard. Holds at
 * most one shard's rows in memory. Throws BadInputError WORKBOOK_INVALID for a workbook with no
 * data rows (or one the reader refuses), NotFoundError when the input object is gone.
 */
export async function splitOperation(
  deps: SplitterDeps,
  options: SplitOptions,
): Promise<SplitResult> {
  try {
    return await split(deps, options);
  } catch (err) {
    // Whatever step the abort interrupted (an SDK call, the reader), the caller sees its reason.
    throw options.signal?.aborted ? options.signal.reason : err;
  }
}

async function split(deps: SplitterDeps, options: SplitOptions): Promise<SplitResult> {
  const { manifest, signal } = options;
  const clock = deps.clock ?? systemClock;
  const op = manifest.id;
  const shardSize = manifest.spec.shardSize;
  // Callers often pass a logger already bound to the operation; bind it once only.
  const log =
    deps.logger.bindings().operationId === op
      ? deps.logger
      : deps.logger.child({ operationId: op });
  const started = clock.now();

  const limits = options.limits ?? DEFAULT_WORKBOOK_LIMITS;
  const input = await objectByteSource(deps.store, manifest.input.key, signal);
  const sink = new SliceSink(deps, options, log);
  const { headers, noted } =
    manifest.input.format === "xlsx"
      ? await cutXlsx(deps, options, input, sink, limits)
      : await splitRows(options, input, sink, limits);
  await sink.finish();
  const rows = sink.rows;

  if (headers === undefined) throw new BadInputError("WORKBOOK_INVALID", "workbook is empty");
  if (rows === 0) {
    throw new BadInputError("WORKBOOK_INVALID", "workbook has a header row but no data rows");
  }

  const shards = planShards(rows, shardSize);
  log.info(
    {
      rows,
      ...(noted === undefined ? {} : { notedRows: noted }),
      shards: shards.length,
      shardSize,
      ms: clock.now() - started,
    },
    "operation split",
  );
  return { rows, shards, headers };
}

/** Checks the header row read now against the one read at submission. */
function checkHeaders(manifest: Manifest, headers: string[]): void {
  if (manifest.headers.length > 0 && !sameHeaders(manifest.headers, headers)) {
    // The merger labels columns with manifest.headers; a different row would mislabel them.
    throw new BadInputError(
      "WORKBOOK_INVALID",
      `the header row (${headers.join(", ")}) differs from the one read at submission (${manifest.headers.join(", ")})`,
    );
  }
}

/** Slices in shard order: each uploaded, then its shard queued (10 messages a batch). */
class SliceSink {
  /** Data rows in the slices so far. */
  rows = 0;
  #shard = 0;
  #pending: ShardMessage[] = [];
  /** Uploads in flight, oldest first; a shard is queued only once its slice exists. */
  #uploads: Array<{ done: Promise<void>; message: ShardMessage }> = [];

  constructor(
    private readonly deps: SplitterDeps,
    private readonly options: SplitOptions,
    private readonly log: Logger,
  ) {}

  /**
   * Hands over the first `slices` shards, whose slices a previous run wrote (every one but the
   * last of `shardSize` rows), as if they had just been uploaded; `rows` is their total.
   */
  async resumeAfter(slices: number, rows: number, shardSize: number): Promise<void> {
    const op = this.options.manifest.id;
    for (let k = 0; k < slices; k++) {
      const start = k * shardSize;
      this.#pending.push({
        v: 1,
        operationId: op,
        shardId: shardIdFor(k),
        start,
        end: Math.min(start + shardSize, rows),
      });
      if (this.#pending.length === SQS_BATCH_MAX) await this.#flush();
    }
    this.#shard = slices;
    this.rows = rows;
  }

  /** Uploads the next shard's slice (at most `UPLOADS_IN_FLIGHT` at once). */
  async add(
    body: Buffer,
    rows: number,
    format: "xml" | "ndjson",
    metadata?: Record<string, string>,
  ): Promise<void> {
    const op = this.options.manifest.id;
    const shardId = shardIdFor(this.#shard++);
    const key = format === "xml" ? keys.shardSheetSlice(op, shardId) : keys.shardInput(op, shardId);
    const message: ShardMessage = {
      v: 1,
      operationId: op,
      shardId,
      start: this.rows,
      end: this.rows + rows,
    };
    this.rows += rows;
    // upload(): one PUT, or multipart for a slice of wide rows past the single-PUT limit.
    const done = this.deps.store
      .upload(key, body, {
        contentType: format === "xml" ? XML_CONTENT_TYPE : NDJSON_CONTENT_TYPE,
        signal: this.options.signal,
        ...(metadata ? { metadata } : {}),
      })
      .then(() => this.log.debug({ shardId, bytes: body.length }, "slice written"));
    done.catch(() => {}); // awaited in order below; never an unhandled rejection meanwhile
    this.#uploads.push({ done, message });
    while (this.#uploads.length > UPLOADS_IN_FLIGHT) await this.#landed();
  }

  async #landed(): Promise<void> {
    const first = this.#uploads.shift();
    if (!first) return;
    await first.done;
    // Queue shards as their slices land (10 a batch) so workers start while the split goes on.
    this.#pending.push(first.message);
    if (this.#pending.length === SQS_BATCH_MAX) await this.#flush();
  }

  async #flush(): Promise<void> {
    const batch = this.#pending;
    this.#pending = [];
    if (batch.length > 0 && this.options.enqueue !== false)
      await this.deps.queue.sendShards(this.options.workQueueUrl, batch, this.options.signal);
  }

  /** Waits for every upload and queues what is left. */
  async finish(): Promise<void> {
    while (this.#uploads.length > 0) await this.#landed();
    await this.#flush();
  }

  /** After a failure: lets the uploads still running settle (their errors are dropped). */
  async abandon(): Promise<void> {
    await Promise.allSettled(this.#uploads.map((u) => u.done));
    this.#uploads = [];
  }
}

/** Slice uploads overlapping the scan (the scan waits while this many are running). */
const UPLOADS_IN_FLIGHT = 2;

/** The header row's cells, its shared strings read only as far as it refers to them. */
async function parseHeaderXml(
  xml: Buffer,
  sheet: OpenedSheet,
  maxChars: number,
): Promise<string[]> {
  const cellsOf = async (strings: readonly string[], used: number[]) => {
    const ctx: SheetContext = {
      sharedString(index) {
        used.push(index);
        if (index >= strings.length) return null;
        return strings[index] ?? null;
      },
      isDateStyle: (styleId) => sheet.dateStyles[styleId] === true,
      date1904: sheet.date1904,
    };
    for await (const row of sheetRows(saxBatches(Readable.from([sliceDocument([xml])])), ctx, {
      afterRow: 0,
    })) {
      return row.cells;
    }
    return [];
  };
  const used: number[] = [];
  await cellsOf([], used);
  let strings: string[] = [];
  if (used.length > 0) {
    const count = Math.max(...used) + 1;
    const sst = await sheet.openSharedStrings();
    if (!sst) throw notXlsx(new Error("the header row refers to shared strings there are none of"));
    try {
      strings = await readSharedStrings(sst, maxChars, { count });
    } finally {
      sst.destroy();
    }
    if (strings.length < count) throw notXlsx(new Error(`shared string ${count - 1} is missing`));
  }
  return parseHeaderRow(await cellsOf(strings, []));
}

/**
 * The xlsx path: stores the shared strings and the slice context, then cuts the sheet into
 * slices of raw row XML. Parses only the header row.
 */
async function cutXlsx(
  deps: SplitterDeps,
  options: SplitOptions,
  input: ByteSource,
  sink: SliceSink,
  limits: WorkbookLimits,
): Promise<{ headers: string[] | undefined; noted: undefined }> {
  const { manifest, signal } = options;
  const op = manifest.id;
  let headers: string[] | undefined;
  let sheet: OpenedSheet | undefined;
  try {
    sheet = await openXlsxSheet(input, { sheet: manifest.spec.sheet, limits, signal });
    if (!sheet) return { headers, noted: undefined };
    const resume = await resumePoint(deps, manifest, signal);
    if (resume) {
      // Slice 0 was written after the header row was checked against the manifest's.
      headers = manifest.headers;
      await sink.resumeAfter(resume.slices, resume.mark.rows, manifest.spec.shardSize);
      deps.logger.info(
        { operationId: op, slices: resume.slices, rows: resume.mark.rows },
        "split resumed after the slices already written",
      );
    } else if (sheet.hasSharedStrings) {
      const sst = await sheet.openSharedStrings();
      if (sst) {
        await deps.store.upload(keys.sharedStrings(op), sst, {
          contentType: XML_CONTENT_TYPE,
          signal,
        });
      }
    }
    if (!resume) {
      const context = sliceContextSchema.parse({
        v: 1,
        date1904: sheet.date1904,
        dateStyles: sheet.dateStyles.flatMap((isDate, id) => (isDate ? [id] : [])),
        sharedStrings: sheet.hasSharedStrings,
      } satisfies SliceContext);
      // Before any slice: a worker that finds no context would read the slice as NDJSON.
      await deps.store.putText(
        keys.sliceContext(op),
        JSON.stringify(context),
        "application/json",
        signal,
      );
    }

    const xml = await sheet.openSheet();
    const pieces = cutSheet(xml as AsyncIterable<Buffer>, {
      rowsPerSlice: manifest.spec.shardSize,
      onRow: (rows) => checkRowCount(rows, limits),
      ...(resume ? { resume: resume.mark } : {}),
    });
    for await (const piece of pieces) {
      signal?.throwIfAborted();
      if (piece.kind === "dimension") {
        const rows = dimensionDataRows(piece.ref);
        if (rows !== undefined) checkRowCount(rows, limits);
      } else if (piece.kind === "header") {
        headers = await parseHeaderXml(piece.xml, sheet, EXCEL_MAX_CELL_CHARS);
        checkHeaders(manifest, headers);
      } else {
        await sink.add(
          sliceDocument(piece.parts),
          piece.rows,
          "xml",
          sliceMarkMetadata(piece.mark),
        );
      }
    }
  } catch (err) {
    await sink.abandon();
    throw asWorkbookError(err, signal);
  } finally {
    await sheet?.close();
    await input.close();
  }
  return { headers, noted: undefined };
}

/**
 * Where an interrupted xlsx split of `manifest` may go on (./split-resume.ts), when its slices
 * agree with its shard size; undefined to split from the start.
 */
async function resumePoint(
  deps: SplitterDeps,
  manifest: Manifest,
  signal?: AbortSignal,
): Promise<ResumePoint | undefined> {
  if (manifest.headers.length === 0) return undefined; // nothing to check a resumed split against
  const found = await findResumePoint(deps.store, manifest.id, signal);
  if (!found) return undefined;
  const size = manifest.spec.shardSize;
  const { slices, mark } = found;
  // Every slice before the last holds exactly `size` rows; the last, 1 to `size`.
  return mark.rows > (slices - 1) * size && mark.rows <= slices * size ? found : undefined;
}

/** The row path (CSV): reads, fits and encodes every row, written as NDJSON slices. */
async function splitRows(
  options: SplitOptions,
  input: ByteSource,
  sink: SliceSink,
  limits: WorkbookLimits,
): Promise<{ headers: string[] | undefined; noted: number }> {
  const { manifest, signal } = options;
  const shardSize = manifest.spec.shardSize;
  const rows = readWorkbookRows(input, {
    format: manifest.input.format,
    sheet: manifest.spec.sheet,
    csvValues: manifest.spec.csvValues,
    limits,
    signal,
  });

  let headers: string[] | undefined;
  let next = 0;
  /** Rows kept with a note (cells beyond the header, cut text, uncalculated formulas). */
  let noted = 0;
  let lines: string[] = [];
  try {
    for await (const row of rows) {
      if (headers === undefined) {
        headers = parseHeaderRow(row.cells);
        checkHeaders(manifest, headers);
        continue;
      }
      const problems = rowProblems(row, headers.length);
      const fitted = cutLongCells(fitRow(row.cells, headers.length));
      if (isEmptyRow(fitted) && problems.length === 0) continue;
      checkRowCount(next + 1, limits);
      if (problems.length > 0) noted++;
      const line: InputRow = {
        i: next++,
        c: fitted.map(encodeCell),
        ...(problems.length > 0 ? { n: problems.join("; ") } : {}),
      };
      lines.push(`${JSON.stringify(line)}\n`);
      if (lines.length === shardSize) {
        await sink.add(Buffer.from(lines.join("")), lines.length, "ndjson");
        lines = [];
      }
    }
    if (lines.length > 0) await sink.add(Buffer.from(lines.join("")), lines.length, "ndjson");
  } catch (err) {
    await sink.abandon();
    throw err;
  } finally {
    await rows.return(undefined);
  }
  return { headers, noted };
}
