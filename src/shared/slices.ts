/**
 * A shard's input rows, read from its slice, for the worker (to run them) and the merger (to
 * write them). Two slice forms, chosen by the splitter per operation:
 *
 * - xlsx: the sheet's own `<row>` XML for the shard's rows (`keys.shardSheetSlice`), cut by the
 *   scheduler without parsing it (src/scheduler/workbook/sheet-slicer.ts). Parsed here with the
 *   same sheet reader the scheduler uses at intake, against the operation's slice context
 *   (`keys.sliceContext`: date styles, 1904 dates) and its shared strings (`keys.sharedStrings`),
 *   both loaded once per operation. Each row is then fitted to the header exactly as the
 *   splitter used to (cells beyond it left out with a note, text cut to Excel's cell limit, a
 *   formula without a cached value noted), so every cell keeps the meaning the README gives it.
 * - csv (and any operation without a slice context): one NDJSON `InputRow` per line
 *   (`keys.shardInput`), written by the splitter.
 *
 * The form is chosen per slice: a shard of an xlsx operation without its XML slice reads the
 * NDJSON one (a retry shard's slice, src/scheduler/retry/retry-planner.ts, holds only the rows
 * it runs again, as fitted `InputRow`s).
 *
 * Rows are numbered `start`, `start + 1`, … in slice order; a slice whose rows do not fill its
 * range exactly broke the splitter's contract: an INTERNAL error.
 */
import { createInterface } from "node:readline";
import { Readable } from "node:stream";
import { NotFoundError, ShardfleetError } from "./errors.ts";
import { keys } from "./keys.ts";
import type { ObjectStore } from "./object-store.ts";
import {
  type Cell,
  canonicalCell,
  decodeCell,
  encodeCell,
  type InputRow,
  inputRowSchema,
} from "./schemas/cells.ts";
import { type SliceContext, sliceContextSchema } from "./schemas/slice.ts";
import { rowProblems } from "./workbook/row-checks.ts";
import { EXCEL_MAX_CELL_CHARS, fitRow } from "./workbook/row-shape.ts";
import { feedRowXml } from "./workbook/row-xml.ts";
import { saxBatches } from "./workbook/sax.ts";
import { readSharedStrings } from "./workbook/shared-strings.ts";
import {
  type SheetContext,
  type SheetRow,
  SheetRowReader,
  sheetRows,
} from "./workbook/sheet-xml.ts";

/** A shard's slice does not exist (not yet written, or gone). */
export class SliceMissingError extends NotFoundError {}

/** A shard's place: which slice, and the row indices it holds. */
export interface SliceRef {
  operationId: string;
  shardId: string;
  start: number;
  end: number;
}

/** What the cells of an operation's xlsx slices refer to. */
export interface SheetCells {
  context: SliceContext;
  strings: readonly string[];
}

export interface SliceContextsOptions {
  /** Operations whose context stays loaded (least recently used dropped first). @default 4 */
  maxCached?: number;
}

/**
 * The slice contexts of the operations this process reads, each loaded once (with its shared
 * strings, the largest part). `undefined` for an operation whose slices are NDJSON. A failed
 * load is not kept, so the next read tries again.
 */
export class SliceContexts {
  readonly #store: ObjectStore;
  readonly #max: number;
  readonly #loaded = new Map<string, Promise<SheetCells | undefined>>();

  constructor(deps: { store: ObjectStore }, options: SliceContextsOptions = {}) {
    this.#store = deps.store;
    this.#max = options.maxCached ?? 4;
  }

  /** Drops what is known of `operationId` (its context may not have been written yet). */
  forget(operationId: string): void {
    this.#loaded.delete(operationId);
  }

  get(operationId: string, signal?: AbortSignal): Promise<SheetCells | undefined> {
    let loading = this.#loaded.get(operationId);
    if (loading) {
      // Most recently used last.
      this.#loaded.delete(operationId);
      this.#loaded.set(operationId, loading);
      return loading;
    }
    loading = this.#load(operationId, signal);
    this.#loaded.set(operationId, loading);
    loading.catch(() => {
      if (this.#loaded.get(operationId) === loading) this.#loaded.delete(operationId);
    });
    while (this.#loaded.size > this.#max) {
      const oldest = this.#loaded.keys().next().value;
      if (oldest === undefined) break;
      this.#loaded.delete(oldest);
    }
    return loading;
  }

  async #load(op: string, signal?: AbortSignal): Promise<SheetCells | undefined> {
    const context = await this.#store.getJson(keys.sliceContext(op), sliceContextSchema, signal);
    if (!context) return undefined;
    if (!context.sharedStrings) return { context, strings: [] };
    const stream = await this.#store.getStream(keys.sharedStrings(op), signal);
    if (!stream) throw new NotFoundError(`shared strings ${keys.sharedStrings(op)} do not exist`);
    try {
      return { context, strings: await readSharedStrings(stream, EXCEL_MAX_CELL_CHARS) };
    } finally {
      stream.destroy();
    }
  }
}

/** The parts of a SheetContext a slice needs (no dimension: the splitter checked it). */
export function sheetContextOf(cells: SheetCells, key: string): SheetContext {
  const dates = new Set(cells.context.dateStyles);
  return {
    sharedString(index) {
      // A reference to a missing shared string is a damaged file; null would lose data silently.
      if (index < 0 || index >= cells.strings.length) {
        throw new ShardfleetError("INTERNAL", `${key}: shared string ${index} is missing`);
      }
      return cells.strings[index] ?? null;
    },
    isDateStyle: (styleId) => dates.has(styleId),
    date1904: cells.context.date1904,
  };
}

/** One input row with its cells decoded (as a task sees them): an `InputRow` before encoding. */
export interface DecodedInputRow {
  i: number;
  /** Fitted to the header's width. */
  cells: Cell[];
  n?: string;
}

/**
 * The shard's input rows in order, as `InputRow`s fitted to `width` header columns. Throws
 * SliceMissingError when the slice is missing, ShardfleetError INTERNAL for a slice that is not
 * what the splitter (or the retry planner) writes.
 */
export async function* readInputRows(
  store: ObjectStore,
  contexts: SliceContexts,
  slice: SliceRef,
  width: number,
  signal?: AbortSignal,
): AsyncGenerator<InputRow> {
  for await (const row of sliceRows(store, contexts, slice, width, signal)) {
    if ("c" in row) yield row;
    else
      yield {
        i: row.i,
        c: row.cells.map(encodeCell),
        ...(row.n === undefined ? {} : { n: row.n }),
      };
  }
}

/**
 * The same rows as `readInputRows` with their cells decoded (`canonicalCell`), for the worker:
 * an xlsx slice's cells go from the parser to the task without a trip through JSON.
 */
export async function* readDecodedRows(
  store: ObjectStore,
  contexts: SliceContexts,
  slice: SliceRef,
  width: number,
  signal?: AbortSignal,
): AsyncGenerator<DecodedInputRow> {
  for await (const row of sliceRows(store, contexts, slice, width, signal)) {
    if (!("c" in row)) yield row;
    else
      yield {
        i: row.i,
        // A line may hold fewer cells than the header: the rest are empty.
        cells: fitRow(row.c.map(decodeCell), width),
        ...(row.n === undefined ? {} : { n: row.n }),
      };
  }
}

/** The slice's rows as they come: decoded from sheet XML, encoded from NDJSON. */
async function* sliceRows(
  store: ObjectStore,
  contexts: SliceContexts,
  slice: SliceRef,
  width: number,
  signal?: AbortSignal,
): AsyncGenerator<InputRow | DecodedInputRow> {
  const cells = await contexts.get(slice.operationId, signal);
  try {
    if (cells) {
      const key = keys.shardSheetSlice(slice.operationId, slice.shardId);
      const stream = await store.getStream(key, signal);
      // No XML slice: a retry shard's (or an old operation's) NDJSON one.
      if (stream) yield* sheetSliceRows(stream, key, cells, slice, width, signal);
      else yield* ndjsonSliceRows(store, slice, signal);
    } else yield* ndjsonSliceRows(store, slice, signal);
  } catch (err) {
    // A context read before the split wrote it is not kept: the next read looks again.
    if (err instanceof SliceMissingError) contexts.forget(slice.operationId);
    throw err;
  }
}

/**
 * A slice document's rows: read whole (a slice is one shard's rows) and tokenized by the fast
 * path (./workbook/row-xml.ts); by saxes, the reference, when the fast path gives up.
 */
async function* parseSlice(stream: Readable, ctx: SheetContext): AsyncGenerator<SheetRow> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  const xml = Buffer.concat(parts).toString("utf8");
  const fast = new SheetRowReader(ctx, { afterRow: 0 });
  if (feedRowXml(xml, fast)) {
    yield* fast.rows;
    return;
  }
  yield* sheetRows(saxBatches(Readable.from([xml])), ctx, { afterRow: 0 });
}

/**
 * A row's cells as the task gets them, in one pass: fitted to `width` (fitRow), text cut to
 * Excel's cell limit (cutLongCells; the note says so), canonical (as after a trip through JSON).
 */
function taskCells(cells: readonly Cell[], width: number): Cell[] {
  const out: Cell[] = new Array(width);
  for (let k = 0; k < width; k++) {
    const cell = cells[k];
    if (cell === undefined) out[k] = null;
    else if (typeof cell === "string") {
      out[k] = cell.length > EXCEL_MAX_CELL_CHARS ? cell.slice(0, EXCEL_MAX_CELL_CHARS) : cell;
    } else out[k] = canonicalCell(cell);
  }
  return out;
}

async function* sheetSliceRows(
  stream: Readable,
  key: string,
  cells: SheetCells,
  slice: SliceRef,
  width: number,
  signal?: AbortSignal,
): AsyncGenerator<DecodedInputRow> {
  let i = slice.start;
  try {
    const ctx = sheetContextOf(cells, key);
    for await (const row of parseSlice(stream, ctx)) {
      if (i >= slice.end) break;
      const problems = rowProblems(row, width);
      yield {
        i: i++,
        cells: taskCells(row.cells, width),
        ...(problems.length > 0 ? { n: problems.join("; ") } : {}),
      };
    }
  } catch (err) {
    if (err instanceof ShardfleetError || signal?.aborted) throw err;
    throw new ShardfleetError("INTERNAL", `shard input ${key} is not readable sheet XML`, {
      cause: err,
    });
  } finally {
    stream.destroy();
  }
  if (i !== slice.end) {
    throw new ShardfleetError(
      "INTERNAL",
      `shard input ${key} holds ${i - slice.start} rows, not the shard's ${slice.end - slice.start}`,
    );
  }
}

async function* ndjsonSliceRows(
  store: ObjectStore,
  slice: SliceRef,
  signal?: AbortSignal,
): AsyncGenerator<InputRow> {
  const { start, end } = slice;
  const key = keys.shardInput(slice.operationId, slice.shardId);
  const stream = await store.getStream(key, signal);
  if (!stream) throw new SliceMissingError(`shard input ${key} does not exist`);
  let line = 0;
  try {
    for await (const text of createInterface({ input: stream, crlfDelay: Infinity })) {
      line++;
      if (text.trim() === "") continue;
      let parsed: ReturnType<typeof inputRowSchema.safeParse>;
      try {
        parsed = inputRowSchema.safeParse(JSON.parse(text));
      } catch {
        throw new ShardfleetError("INTERNAL", `shard input ${key} line ${line} is not JSON`);
      }
      if (!parsed.success) {
        throw new ShardfleetError(
          "INTERNAL",
          `shard input ${key} line ${line}: ${parsed.error.issues[0]?.message}`,
        );
      }
      const { i } = parsed.data;
      if (i < start || i >= end) {
        throw new ShardfleetError(
          "INTERNAL",
          `shard input ${key} line ${line}: row ${i} is outside the shard [${start}, ${end})`,
        );
      }
      yield parsed.data;
    }
  } finally {
    stream.destroy();
  }
}
