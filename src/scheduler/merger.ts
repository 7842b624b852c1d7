/**
 * The merger: streams every committed shard into one output workbook, in input row order, and
 * uploads it while it is being written (exceljs streaming writer → PassThrough → multipart
 * upload), so the workbook is never held whole in memory.
 *
 * Sheet "results": the input headers, then the result columns (the union over all shards, in
 * first-seen order, shard by shard), then `error`. Every input row appears exactly once: results
 * are joined to input rows by row index, a second result for the same index is dropped (the
 * first one read wins; duplicates come from at-least-once delivery and racing workers), an input
 * row with no result gets "no result for row", and every row of a shard given up on (`failed` in
 * its done.json) gets that error.
 *
 * A cancelled operation (`cancelled: true`) is merged as far as it got: a shard without a
 * done.json contributes the rows its checkpoint made durable, and every other row gets the error
 * `cancelled`, so the partial output still holds every input row exactly once.
 *
 * Memory: one shard's results (a map by row index) plus the writer's and uploader's buffers;
 * the writer is paused whenever the upload falls behind.
 */

import { once } from "node:events";
import { createInterface } from "node:readline";
import { PassThrough } from "node:stream";
import ExcelJS from "exceljs";
import type { z } from "zod";
import { mapLimit, sharedAbortController, untilAborted } from "../shared/async.ts";
import { NotFoundError, NotReadyError, ShardfleetError } from "../shared/errors.ts";
import { keys } from "../shared/keys.ts";
import type { Logger } from "../shared/logger.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import {
  type Cell,
  decodeCell,
  type InputRow,
  type ResultRow,
  resultRowSchema,
} from "../shared/schemas/cells.ts";
import type { Manifest } from "../shared/schemas/operation.ts";
import { checkpointSchema, type ShardDone, shardDoneSchema } from "../shared/schemas/shard.ts";
import { readInputRows, SliceContexts } from "../shared/slices.ts";
import { XLSX_CONTENT_TYPE } from "./workbook/read-rows.ts";

export const RESULT_SHEET = "results";
export const ERROR_COLUMN = "error";
export const NO_RESULT_ERROR = "no result for row";
/** The error of a row a cancel stopped before it ran. */
export const CANCELLED_ERROR = "cancelled";
/** Excel refuses longer cell text; longer values are cut (and a warning logged). */
export const MAX_CELL_TEXT = 32_767;

export interface MergerDeps {
  store: ObjectStore;
  logger: Logger;
}

export interface MergeOptions {
  /** The operation's manifest; `shards` must be set (the operation was split). */
  manifest: Manifest;
  signal?: AbortSignal;
  /** done.json objects fetched at once. @default 16 */
  concurrency?: number;
  /**
   * Merge a cancelled operation: uncommitted shards give their checkpointed rows, the rest are
   * `cancelled`. @default false (every shard must be committed)
   */
  cancelled?: boolean;
}

export interface MergeResult {
  /** Where the workbook was written (`keys.result`). */
  key: string;
  /** Data rows written (every input row once). */
  rows: number;
  /** Rows whose error cell is set. */
  errorRows: number;
  /** Result columns, between the input columns and `error`. */
  columns: string[];
}

/** The result columns of all shards: first-seen order, shards taken in order. */
export function unionColumns(dones: readonly Pick<ShardDone, "columns">[]): string[] {
  const seen = new Set<string>();
  for (const done of dones) for (const column of done.columns) seen.add(column);
  return [...seen];
}

/**
 * One output row: the input cells, the result columns (null where the result has none), and
 * the error text or null. `failed` (a shard given up on) overrides any result; the input row's
 * note, if any, is put before the error.
 */
export function mergeRow(
  input: InputRow,
  result: ResultRow | undefined,
  columns: readonly string[],
  width: number,
  failed?: string,
  noResult: string = NO_RESULT_ERROR,
): { cells: Cell[]; error: string | null } {
  const cells: Cell[] = [];
  for (let k = 0; k < width; k++) {
    const encoded = input.c[k];
    cells.push(encoded === undefined ? null : decodeCell(encoded));
  }
  const values = failed === undefined ? result?.r : undefined;
  for (const column of columns) {
    const encoded = values?.[column];
    cells.push(encoded === undefined ? null : decodeCell(encoded));
  }
  const outcome = failed ?? (result ? (result.e ?? null) : noResult);
  // The input's own note (see InputRow) comes first: it explains any result that follows.
  const error =
    input.n === undefined ? outcome : outcome === null ? input.n : `${input.n}; ${outcome}`;
  return { cells, error };
}

/**
 * Cuts text over Excel's cell limit (a transform plugin's result can be any length) and says so
 * in the row's error, so no cell is shortened without a word; the error itself is cut last.
 */
export function fitToExcel(
  row: { cells: Cell[]; error: string | null },
  names: readonly string[],
): { cells: Cell[]; error: string | null; cut: boolean } {
  const notes: string[] = [];
  const cells = row.cells.map((v, k) => {
    if (typeof v !== "string" || v.length <= MAX_CELL_TEXT) return v;
    notes.push(
      `${names[k] ?? `column ${k + 1}`} cut from ${v.length} to ${MAX_CELL_TEXT} characters (Excel's cell limit)`,
    );
    return v.slice(0, MAX_CELL_TEXT);
  });
  let error = notes.length > 0 ? [row.error, ...notes].filter(Boolean).join("; ") : row.error;
  if (error !== null && error.length > MAX_CELL_TEXT) error = error.slice(0, MAX_CELL_TEXT);
  return { cells, error, cut: notes.length > 0 || error !== row.error };
}

/** The lines of an NDJSON object, each parsed with `schema`. */
async function* ndjson<S extends z.ZodType>(
  store: ObjectStore,
  key: string,
  schema: S,
  signal?: AbortSignal,
): AsyncGenerator<z.infer<S>> {
  const stream = await store.getStream(key, signal);
  if (!stream) throw new NotFoundError(`${key} not found`, { details: { key } });
  const lines = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
  let n = 0;
  try {
    for await (const line of lines) {
      n++;
      if (line.trim() === "") continue;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch (err) {
        throw new ShardfleetError("INTERNAL", `${key} line ${n} is not JSON`, { cause: err });
      }
      const parsed = schema.safeParse(value);
      if (!parsed.success) {
        throw new ShardfleetError(
          "INTERNAL",
          `${key} line ${n}: ${parsed.error.issues[0]?.message}`,
          {
            cause: parsed.error,
          },
        );
      }
      yield parsed.data;
    }
  } finally {
    lines.close();
    stream.destroy();
  }
}

type DateFormat = "yyyy-mm-dd" | "yyyy-mm-dd hh:mm:ss";

function dateFormat(date: Date): DateFormat {
  return date.getTime() % 86_400_000 === 0 ? "yyyy-mm-dd" : "yyyy-mm-dd hh:mm:ss";
}

/** Shared, frozen cell styles (see addRow): exceljs caches a style's id by object identity. */
const PLAIN_STYLE: Partial<ExcelJS.Style> = Object.freeze({});
const DATE_STYLES: Record<DateFormat, Partial<ExcelJS.Style>> = {
  "yyyy-mm-dd": Object.freeze({ numFmt: "yyyy-mm-dd" }),
  "yyyy-mm-dd hh:mm:ss": Object.freeze({ numFmt: "yyyy-mm-dd hh:mm:ss" }),
};

/** A readable width from the header alone (rows stream by, so they cannot be measured first). */
export function columnWidth(name: string): number {
  if (name === ERROR_COLUMN) return 50;
  return Math.min(40, Math.max(14, name.length + 2));
}

/**
 * Merges the committed shards of `manifest` into `keys.result(op)`. Throws NotReadyError when
 * the operation was not split or a shard has no done.json (merge only when all are committed),
 * NotFoundError when a slice or a chunk listed in a done.json is missing.
 */
export async function mergeOperation(
  deps: MergerDeps,
  options: MergeOptions,
): Promise<MergeResult> {
  try {
    return await merge(deps, options);
  } catch (err) {
    // Whatever step the abort interrupted (an SDK call, a stream), the caller sees its reason.
    throw options.signal?.aborted ? options.signal.reason : err;
  }
}

async function merge(deps: MergerDeps, options: MergeOptions): Promise<MergeResult> {
  const { manifest, signal } = options;
  const op = manifest.id;
  // Callers often pass a logger already bound to the operation; bind it once only.
  const log =
    deps.logger.bindings().operationId === op
      ? deps.logger
      : deps.logger.child({ operationId: op });
  const shards = manifest.shards;
  if (!shards) throw new NotReadyError(`operation ${op} has not been split yet`);

  const dones = await loadDones(
    deps.store,
    op,
    shards,
    { concurrency: options.concurrency ?? 16, cancelled: options.cancelled ?? false },
    signal,
  );
  const columns = unionColumns(dones);
  const names = [...manifest.headers, ...columns, ERROR_COLUMN];
  const key = keys.result(op);
  const output = openOutput(deps.store, key, signal);
  const totals = { rows: 0, errorRows: 0, truncated: 0 };
  try {
    const sheet = openResultSheet(output.body, names, output.stop.signal);
    // The input rows come from the slices (sheet XML or NDJSON, src/shared/slices.ts).
    const slices = new SliceContexts({ store: deps.store }, { maxCached: 1 });
    for (const [k, shard] of shards.entries()) {
      const written = await writeShard(
        { store: deps.store, sheet, log, slices },
        {
          op,
          shard,
          done: dones[k]!,
          columns,
          names,
          width: manifest.headers.length,
          noResult: options.cancelled ? CANCELLED_ERROR : NO_RESULT_ERROR,
        },
        output.stop.signal,
      );
      totals.rows += written.rows;
      totals.errorRows += written.errorRows;
      totals.truncated += written.truncated;
    }
    await sheet.commit();
    await output.upload;
  } catch (err) {
    throw output.fail(err);
  } finally {
    output.release();
  }

  const { rows, errorRows, truncated } = totals;
  if (truncated > 0) log.warn({ cells: truncated, limit: MAX_CELL_TEXT }, "long cell text cut");
  log.info(
    { key, rows, errorRows, columns: columns.length, shards: shards.length },
    "operation merged",
  );
  return { key, rows, errorRows, columns };
}

type ShardRange = NonNullable<Manifest["shards"]>[number];

/** What the merge reads of one shard: its done.json, or (cancelled) its checkpoint's part. */
type ShardPart = Pick<ShardDone, "columns" | "chunks" | "failed">;

/**
 * Every shard's done.json; throws NotReadyError for a shard that has not committed, unless
 * `cancelled`: then such a shard gives what its checkpoint made durable (or nothing).
 */
function loadDones(
  store: ObjectStore,
  op: string,
  shards: readonly ShardRange[],
  options: { concurrency: number; cancelled: boolean },
  signal?: AbortSignal,
): Promise<ShardPart[]> {
  return mapLimit(shards, options.concurrency, async (shard): Promise<ShardPart> => {
    const done = await store.getJson(keys.done(op, shard.id), shardDoneSchema, signal);
    if (!done && options.cancelled) {
      const checkpoint = await store
        .getJson(keys.checkpoint(op, shard.id), checkpointSchema, signal)
        .catch(() => undefined);
      return { columns: checkpoint?.columns ?? [], chunks: checkpoint?.chunks ?? [] };
    }
    if (!done) {
      throw new NotReadyError(
        `shard ${shard.id} of operation ${op} has not committed (no done.json)`,
        {
          details: { shardId: shard.id },
        },
      );
    }
    if (done.operationId !== op || done.shardId !== shard.id) {
      throw new ShardfleetError(
        "INTERNAL",
        `${keys.done(op, shard.id)} belongs to ${done.operationId}/${done.shardId}`,
      );
    }
    return done;
  });
}

/**
 * The output object's upload, reading `body` while the writer fills it. Either side failing
 * stops the other through `stop`, which the caller's signal aborts too.
 */
function openOutput(store: ObjectStore, key: string, signal?: AbortSignal) {
  const stop = sharedAbortController();
  const onAbort = () => stop.abort(signal?.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  if (signal?.aborted) onAbort();
  const body = new PassThrough();
  const upload = store.upload(key, body, { contentType: XLSX_CONTENT_TYPE, signal: stop.signal });
  // An upload failure aborts `stop`, which ends every wait on the writer: it would otherwise
  // wait forever for a reader that has gone.
  upload.catch((err: unknown) => stop.abort(err));
  return {
    body,
    upload,
    stop,
    /** Stops both sides; returns the error to report. */
    fail(err: unknown): unknown {
      // After an upload failure the writer's error is only "aborted": report the upload's.
      const cause = stop.signal.aborted ? stop.signal.reason : err;
      stop.abort(cause);
      body.destroy();
      return cause;
    },
    release() {
      signal?.removeEventListener("abort", onAbort);
    },
  };
}

interface ResultSheet {
  /** Adds a row, waiting while the upload lags behind. */
  addRow(values: Cell[]): Promise<void>;
  /** Ends the sheet and the workbook. */
  commit(): Promise<void>;
}

/** The streaming workbook with its one sheet and header row, written into `body`. */
function openResultSheet(body: PassThrough, names: string[], stop: AbortSignal): ResultSheet {
  const writer = new ExcelJS.stream.xlsx.WorkbookWriter({
    stream: body,
    useStyles: true,
    useSharedStrings: false,
  });
  const sheet = writer.addWorksheet(RESULT_SHEET, {
    views: [{ state: "frozen", ySplit: 1 }],
  });
  // Widths must be set before the first row: the streaming writer emits them ahead of the rows.
  // Without them every column is Excel's narrow default and dates show as ###.
  sheet.columns = names.map((name) => ({ width: columnWidth(name) }));
  const header = sheet.addRow(names);
  header.font = { bold: true };
  header.commit();
  return {
    async addRow(values) {
      const row = sheet.addRow(values);
      // Every cell gets one of a few shared style objects: exceljs looks a style up by object
      // identity first and otherwise renders it to XML to find its id, once per cell, which was
      // the largest single cost of the merge. The shared objects must never be mutated.
      row.eachCell({ includeEmpty: true }, (cell, column) => {
        const v = values[column - 1];
        cell.style = v instanceof Date ? DATE_STYLES[dateFormat(v)] : PLAIN_STYLE;
      });
      row.commit();
      // Backpressure: exceljs never waits for its output, so wait here while the upload lags.
      if (body.writableNeedDrain) await once(body, "drain", { signal: stop });
    },
    async commit() {
      sheet.commit();
      await untilAborted(writer.commit(), stop);
    },
  };
}

/** One shard's results by row index (the first read wins), and how many repeats were dropped. */
async function readResults(
  store: ObjectStore,
  done: ShardPart,
  signal: AbortSignal,
): Promise<{ results: Map<number, ResultRow>; duplicates: number }> {
  const results = new Map<number, ResultRow>();
  let duplicates = 0;
  if (done.failed !== undefined) return { results, duplicates };
  for (const chunk of done.chunks) {
    for await (const result of ndjson(store, chunk.key, resultRowSchema, signal)) {
      if (results.has(result.i)) duplicates++;
      else results.set(result.i, result);
    }
  }
  return { results, duplicates };
}

/** Writes one shard's input rows joined to its results; returns what it wrote. */
async function writeShard(
  deps: { store: ObjectStore; sheet: ResultSheet; log: Logger; slices: SliceContexts },
  shardOf: {
    op: string;
    shard: ShardRange;
    done: ShardPart;
    columns: readonly string[];
    names: readonly string[];
    width: number;
    /** The error of a row with no result. */
    noResult: string;
  },
  signal: AbortSignal,
): Promise<{ rows: number; errorRows: number; truncated: number }> {
  const { op, shard, done, columns, names, width, noResult } = shardOf;
  const { results, duplicates } = await readResults(deps.store, done, signal);
  const written = { rows: 0, errorRows: 0, truncated: 0 };
  const slice = { operationId: op, shardId: shard.id, start: shard.start, end: shard.end };
  for await (const input of readInputRows(deps.store, deps.slices, slice, width, signal)) {
    const merged = fitToExcel(
      mergeRow(input, results.get(input.i), columns, width, done.failed, noResult),
      names,
    );
    if (merged.cut) written.truncated++;
    await deps.sheet.addRow([...merged.cells, merged.error]);
    written.rows++;
    if (merged.error !== null) written.errorRows++;
  }
  const expected = shard.end - shard.start;
  if (duplicates > 0 || written.rows !== expected) {
    deps.log.warn(
      { shardId: shard.id, duplicates, rows: written.rows, expected },
      duplicates > 0 ? "duplicate results dropped" : "slice row count differs from its range",
    );
  }
  return written;
}
