/**
 * The merger: stitches every committed shard into one output workbook, in input row order, and
 * uploads it while it is being written (zip writer → PassThrough → multipart upload), so the
 * workbook is never held whole in memory.
 *
 * Sheet "results": the input headers, then the result columns (the union over all shards, in
 * first-seen order, shard by shard), then `error`. Every input row appears exactly once: results
 * are joined to input rows by row index, a second result for the same index is dropped (the
 * first one read wins; duplicates come from at-least-once delivery and racing workers), an input
 * row with no result gets "no result for row", and every row of a shard given up on (`failed` in
 * its done.json) gets that error.
 *
 * Workers render their rows: each chunk of a commit may carry a segment, its rows as finished
 * sheet XML compressed as raw deflate that ends on a byte boundary (src/shared/sheet/). The
 * sheet entry of the zip is a header this merger compresses, the segments in shard and chunk
 * order, and a footer it compresses as the final block; its CRC-32 is combined from theirs
 * (./workbook/crc32-combine.ts). No row is parsed or inflated. A shard whose segments cannot be
 * used as they are (one is missing, or was rendered with other result columns than the
 * operation's union, a shard given up on, a cancelled shard's rows) is rendered here from its
 * input slice and result chunks, with the same renderer.
 *
 * A retried operation (`manifest.retries`) merges each shard's runs in order: the split's, then
 * its shard in each retry; a row takes its outcome from the latest run that ran it (a retry runs
 * only rows that ended with an error), so finished rows keep their first result.
 * Such a shard (more than one run) is always rendered here from each row's latest outcome: its
 * split's segments hold the rows the retry replaced, and a retry's cover only its own rows.
 *
 * A cancelled operation (`cancelled: true`) is merged as far as it got: a shard without a
 * done.json contributes the rows its checkpoint made durable, and every other row gets the error
 * `cancelled`, so the partial output still holds every input row exactly once.
 *
 * Memory: the segments of a few shards fetched ahead, or one shard's results (a map by row
 * index) when it is rendered here, plus the uploader's buffers; writing waits whenever the
 * upload falls behind.
 */

import { once } from "node:events";
import { createInterface } from "node:readline";
import { PassThrough } from "node:stream";
import type { z } from "zod";
import { mapLimit, sharedAbortController } from "../shared/async.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import { NotFoundError, NotReadyError, ShardfleetError } from "../shared/errors.ts";
import { keys } from "../shared/keys.ts";
import type { Logger } from "../shared/logger.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import {
  CANCELLED_ERROR,
  ERROR_COLUMN,
  fitToExcel,
  MAX_CELL_TEXT,
  NO_RESULT_ERROR,
  outputRow,
} from "../shared/output-row.ts";
import {
  type Cell,
  decodeCell,
  type InputRow,
  inputRowSchema,
  type ResultRow,
  resultRowSchema,
} from "../shared/schemas/cells.ts";
import type { Manifest } from "../shared/schemas/operation.ts";
import {
  checkpointSchema,
  type SegmentRef,
  type ShardDone,
  shardDoneSchema,
} from "../shared/schemas/shard.ts";
import { outputRowNumber, renderRow } from "../shared/sheet/rows.ts";
import {
  deflateLast,
  deflateSegment,
  SEGMENT_PIECE_CHARS,
  type Segment,
} from "../shared/sheet/segment.ts";
import { readInputRows, SliceContexts } from "../shared/slices.ts";
import { latestOutcomes, type RowOutcome, runsOf } from "./retry/retry-plan.ts";
import { crc32Combine } from "./workbook/crc32-combine.ts";
import { SHEET_PATH, SHEET_TAIL, sheetHead, workbookParts } from "./workbook/output-xlsx.ts";
import { XLSX_CONTENT_TYPE } from "./workbook/read-rows.ts";
import { type ZipEntryStream, ZipWriter } from "./workbook/zip-writer.ts";

export { CANCELLED_ERROR, ERROR_COLUMN, fitToExcel, MAX_CELL_TEXT, NO_RESULT_ERROR };

export const RESULT_SHEET = "results";

export interface MergerDeps {
  store: ObjectStore;
  logger: Logger;
  /** The workbook's timestamps. @default systemClock */
  clock?: Clock;
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
  /**
   * Write the sheet entry with Zip64 headers. @default when the sheet's predicted size reaches
   * 2 GiB (the central directory always gets Zip64 fields when a size or offset needs them)
   */
  zip64?: boolean;
  /** Segments fetched ahead of the one being written. @default 8 */
  segmentsAhead?: number;
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
  return outputRow(cells, input.n, result, columns, width, failed, noResult);
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

/** A readable width from the header alone (rows stream by, so they cannot be measured first). */
export function columnWidth(name: string): number {
  if (name === ERROR_COLUMN) return 50;
  return Math.min(40, Math.max(14, name.length + 2));
}

/** A sheet predicted this large gets Zip64 headers (half the limit: predictions are rough). */
const ZIP64_FROM = 2 ** 31;
/** Bytes a row is assumed to take when no worker rendered any (only the Zip64 guess uses it). */
const GUESS_BYTES_PER_CELL = 64;

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

type ShardRange = NonNullable<Manifest["shards"]>[number];

/**
 * What the merge reads of one run of a shard: its done.json, or (cancelled, or an earlier run of
 * a retried shard) its checkpoint's part.
 */
type ShardPart = Pick<ShardDone, "columns" | "chunks" | "segments" | "failed"> & {
  /** False for a checkpointed part (a cancelled shard's other rows are `cancelled`). */
  committed: boolean;
  /** The run's own slice (a retry's), whose rows a failed run fails. */
  sliceKey?: string;
};

/**
 * The worker-rendered segments of `shard` in order, when they can be stitched as they are:
 * committed, not given up on, the segments tiling the shard, each of one row per input row of
 * its range, rendered with exactly the operation's result columns. Undefined otherwise.
 */
export function stitchableSegments(
  shard: { start: number; end: number },
  part: ShardPart,
  columns: readonly string[],
): SegmentRef[] | undefined {
  if (!part.committed || part.failed !== undefined || !part.segments) return undefined;
  let at = shard.start;
  for (const segment of part.segments) {
    if (segment.start !== at || segment.end < segment.start) return undefined;
    if (segment.rows !== segment.end - segment.start) return undefined;
    if (segment.columns.length !== columns.length) return undefined;
    if (segment.columns.some((c, k) => c !== columns[k])) return undefined;
    at = segment.end;
  }
  return at === shard.end ? part.segments : undefined;
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
    manifest,
    shards,
    { concurrency: options.concurrency ?? 16, cancelled: options.cancelled ?? false },
    signal,
  );
  const columns = unionColumns(dones.flat());
  const names = [...manifest.headers, ...columns, ERROR_COLUMN];
  // A shard a retry ran again is rendered: its split's segments hold the replaced rows.
  const plans = shards.map((shard, k) => {
    const runs = dones[k]!;
    return runs.length === 1 ? stitchableSegments(shard, runs[0]!, columns) : undefined;
  });
  const key = keys.result(op);
  const output = openOutput(deps.store, key, signal);
  const totals = { rows: 0, errorRows: 0, truncated: 0, stitchedRows: 0 };
  try {
    const stop = output.stop.signal;
    const zip = new ZipWriter(output.write, new Date((deps.clock ?? systemClock).now()));
    for (const [path, xml] of workbookParts(RESULT_SHEET)) await zip.addEntry(path, xml);
    const zip64 = options.zip64 ?? predictSheetBytes(shards, plans, names.length) >= ZIP64_FROM;
    const sheet = new SheetEntry(await zip.openEntry(SHEET_PATH, { zip64 }));
    await sheet.add(deflateSegment(sheetHead(names, columnWidth)));
    // A rendered shard's input rows come from its slice (sheet XML or NDJSON, shared/slices.ts);
    // the context (shared strings) is loaded only when a shard is rendered.
    const slices = new SliceContexts({ store: deps.store }, { maxCached: 1 });
    const fetcher = new SegmentFetcher(
      deps.store,
      plans.flatMap((p) => p ?? []),
      options.segmentsAhead ?? 8,
      stop,
    );
    const rowCounter = { next: outputRowNumber(0) };
    for (const [k, shard] of shards.entries()) {
      const planned = plans[k];
      const fetched = planned
        ? await fetcher.take(planned, rowCounter.next === outputRowNumber(shard.start))
        : undefined;
      if (fetched) {
        for (const [n, ref] of planned!.entries()) await sheet.addBytes(fetched[n]!, ref);
        const rows = planned!.reduce((sum, ref) => sum + ref.rows, 0);
        totals.rows += rows;
        totals.stitchedRows += rows;
        totals.errorRows += planned!.reduce((sum, ref) => sum + ref.errorRows, 0);
        rowCounter.next += rows;
        continue;
      }
      if (planned) {
        log.warn({ shardId: shard.id }, "shard's segments not usable as they are; rendering it");
      }
      const written = await renderShard(
        { store: deps.store, sheet, log, slices },
        {
          op,
          shard,
          runs: dones[k]!,
          columns,
          names,
          width: manifest.headers.length,
          noResult: options.cancelled ? CANCELLED_ERROR : NO_RESULT_ERROR,
          rowCounter,
        },
        stop,
      );
      totals.rows += written.rows;
      totals.errorRows += written.errorRows;
      totals.truncated += written.truncated;
    }
    await sheet.add(deflateLast(SHEET_TAIL));
    await sheet.end();
    await zip.finish();
    output.end();
    await output.upload;
  } catch (err) {
    throw output.fail(err);
  } finally {
    output.release();
  }

  const { rows, errorRows, truncated, stitchedRows } = totals;
  if (truncated > 0) log.warn({ cells: truncated, limit: MAX_CELL_TEXT }, "long cell text cut");
  log.info(
    { key, rows, errorRows, stitchedRows, columns: columns.length, shards: shards.length },
    "operation merged",
  );
  return { key, rows, errorRows, columns };
}

/** A rough size of the sheet's XML: the segments' sizes, and a guess for rows rendered here. */
function predictSheetBytes(
  shards: readonly ShardRange[],
  plans: ReadonlyArray<SegmentRef[] | undefined>,
  width: number,
): number {
  let known = 0;
  let knownRows = 0;
  let unknownRows = 0;
  for (const [k, shard] of shards.entries()) {
    const plan = plans[k];
    if (plan) {
      for (const ref of plan) {
        known += ref.size;
        knownRows += ref.rows;
      }
    } else {
      unknownRows += shard.end - shard.start;
    }
  }
  const perRow = knownRows > 0 ? known / knownRows : GUESS_BYTES_PER_CELL * width;
  return known + unknownRows * perRow;
}

/** The sheet's zip entry: deflate segments in order, their CRC-32 and size combined. */
class SheetEntry {
  readonly #entry: ZipEntryStream;
  #crc = 0;
  #size = 0;

  constructor(entry: ZipEntryStream) {
    this.#entry = entry;
  }

  /** A segment compressed here. */
  async add(segment: Segment): Promise<void> {
    await this.addBytes(segment.bytes, segment);
  }

  /** A segment's bytes with its figures (a worker's, checked against its ref by the caller). */
  async addBytes(bytes: Buffer, stats: { crc: number; size: number }): Promise<void> {
    this.#crc = crc32Combine(this.#crc, stats.crc, stats.size);
    this.#size += stats.size;
    await this.#entry.write(bytes);
  }

  async end(): Promise<void> {
    await this.#entry.end({ crc: this.#crc, size: this.#size });
  }
}

/**
 * Fetches segments in the order they will be written, up to `ahead` of the one being taken, so
 * the S3 round trips overlap the writing.
 */
class SegmentFetcher {
  readonly #store: ObjectStore;
  readonly #refs: readonly SegmentRef[];
  readonly #ahead: number;
  readonly #signal: AbortSignal;
  readonly #pending = new Map<number, Promise<Buffer | undefined>>();
  #started = 0;
  #taken = 0;

  constructor(store: ObjectStore, refs: readonly SegmentRef[], ahead: number, signal: AbortSignal) {
    this.#store = store;
    this.#refs = refs;
    this.#ahead = Math.max(1, ahead);
    this.#signal = signal;
  }

  /**
   * The bytes of the next shard's `refs` (they must be the next ones in order), or undefined
   * when one is missing or not the length its ref says, or when `use` is false (then they are
   * only dropped).
   */
  async take(refs: readonly SegmentRef[], use: boolean): Promise<Buffer[] | undefined> {
    const first = this.#taken;
    this.#taken += refs.length;
    this.#fill(this.#taken + this.#ahead);
    const out: Buffer[] = [];
    let usable = use;
    for (let n = first; n < this.#taken; n++) {
      const pending = this.#pending.get(n);
      this.#pending.delete(n);
      if (!usable) continue;
      const bytes = await pending;
      if (!bytes || bytes.length !== refs[n - first]?.compressedSize) usable = false;
      else out.push(bytes);
    }
    return usable ? out : undefined;
  }

  #fill(upTo: number): void {
    while (this.#started < Math.min(upTo, this.#refs.length)) {
      const n = this.#started++;
      const fetch = this.#store.getBytes(this.#refs[n]!.key, this.#signal);
      // Awaited when taken; a shard dropped unused must not leave an unhandled rejection.
      fetch.catch(() => {});
      this.#pending.set(n, fetch);
    }
  }
}

/**
 * Every shard's runs (the split's, then its retries'), each by its done.json; throws
 * NotReadyError for a run that has not committed, unless `cancelled`: then such a run gives what
 * its checkpoint made durable (or nothing). A shard the split ran without a commit (its
 * operation failed before) is left to its retries when it has any.
 */
function loadDones(
  store: ObjectStore,
  manifest: Manifest,
  shards: readonly ShardRange[],
  options: { concurrency: number; cancelled: boolean },
  signal?: AbortSignal,
): Promise<ShardPart[][]> {
  const op = manifest.id;
  return mapLimit(shards, options.concurrency, async (base): Promise<ShardPart[]> => {
    const runs = runsOf(base, manifest.retries);
    const parts: ShardPart[] = [];
    for (const [k, run] of runs.entries()) {
      const part = await loadDone(
        store,
        op,
        run.id,
        // Only the latest run must have committed: an earlier one may have been cut short (its
        // operation failed, for capacity say) and what it made durable is all it gives.
        // (After a retry, a shard whose checkpoint held all its rows may have no commit at all.)
        {
          cancelled:
            options.cancelled || k < runs.length - 1 || (manifest.retries ?? []).length > 0,
        },
        signal,
      );
      parts.push(run.retryShard ? { ...part, sliceKey: keys.shardInput(op, run.id) } : part);
    }
    return parts;
  });
}

async function loadDone(
  store: ObjectStore,
  op: string,
  shardId: string,
  options: { cancelled: boolean },
  signal?: AbortSignal,
): Promise<ShardPart> {
  const shard = { id: shardId };
  const done = await store.getJson(keys.done(op, shard.id), shardDoneSchema, signal);
  if (!done && options.cancelled) {
    const checkpoint = await store
      .getJson(keys.checkpoint(op, shard.id), checkpointSchema, signal)
      .catch(() => undefined);
    return {
      columns: checkpoint?.columns ?? [],
      chunks: checkpoint?.chunks ?? [],
      committed: false,
    };
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
  return { ...done, committed: true };
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
  // One part in flight while the next fills: the merge's memory does not grow with the output.
  const upload = store.upload(key, body, {
    contentType: XLSX_CONTENT_TYPE,
    signal: stop.signal,
    queueSize: 1,
  });
  // An upload failure aborts `stop`, which ends every wait on the writer: it would otherwise
  // wait forever for a reader that has gone.
  upload.catch((err: unknown) => stop.abort(err));
  return {
    upload,
    stop,
    /** Writes bytes, waiting while the upload lags behind. */
    async write(bytes: Buffer): Promise<void> {
      stop.signal.throwIfAborted();
      if (!body.write(bytes)) await once(body, "drain", { signal: stop.signal });
    },
    end(): void {
      body.end();
    },
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

/**
 * One shard's outcomes by row index from its runs (the latest run that ran a row wins; within a
 * run the first result read wins), and how many repeats were dropped.
 */
export async function readOutcomes(
  store: ObjectStore,
  shard: ShardRange,
  runs: readonly ShardPart[],
  signal?: AbortSignal,
): Promise<{ outcomes: Map<number, RowOutcome>; duplicates: number }> {
  const read = [];
  for (const run of runs) {
    if (run.failed !== undefined) {
      // The split's run covers the whole range; a retry's, the rows of its own slice.
      const rows: number[] = [];
      if (run.sliceKey === undefined) for (let i = shard.start; i < shard.end; i++) rows.push(i);
      else
        for await (const row of ndjson(store, run.sliceKey, inputRowSchema, signal))
          rows.push(row.i);
      read.push({ failed: run.failed, rows, results: [] });
      continue;
    }
    const results: ResultRow[] = [];
    for (const chunk of run.chunks) {
      for await (const result of ndjson(store, chunk.key, resultRowSchema, signal)) {
        results.push(result);
      }
    }
    read.push({ rows: [], results });
  }
  return latestOutcomes(read);
}

/** Every run of each shard of `manifest` (for planning a retry: committed runs only). */
export function loadShardRuns(
  store: ObjectStore,
  manifest: Manifest,
  shards: readonly ShardRange[],
  signal?: AbortSignal,
): Promise<ShardPart[][]> {
  return loadDones(store, manifest, shards, { concurrency: 16, cancelled: true }, signal);
}

/**
 * Renders one shard here: its input rows joined to its results, numbered from
 * `rowCounter.next` on, compressed in batches; returns what it wrote.
 */
async function renderShard(
  deps: { store: ObjectStore; sheet: SheetEntry; log: Logger; slices: SliceContexts },
  shardOf: {
    op: string;
    shard: ShardRange;
    runs: readonly ShardPart[];
    columns: readonly string[];
    names: readonly string[];
    width: number;
    /** The error of a row with no result. */
    noResult: string;
    /** The next output row number, advanced as rows are written. */
    rowCounter: { next: number };
  },
  signal: AbortSignal,
): Promise<{ rows: number; errorRows: number; truncated: number }> {
  const { op, shard, runs, columns, names, width, noResult, rowCounter } = shardOf;
  const { outcomes, duplicates } = await readOutcomes(deps.store, shard, runs, signal);
  const written = { rows: 0, errorRows: 0, truncated: 0 };
  const slice = { operationId: op, shardId: shard.id, start: shard.start, end: shard.end };
  let xml = "";
  for await (const input of readInputRows(deps.store, deps.slices, slice, width, signal)) {
    const outcome = outcomes.get(input.i);
    const merged = fitToExcel(
      outcome !== undefined && "failed" in outcome
        ? mergeRow(input, undefined, columns, width, outcome.failed, noResult)
        : mergeRow(input, outcome?.result, columns, width, undefined, noResult),
      names,
    );
    if (merged.cut) written.truncated++;
    xml += renderRow(rowCounter.next++, [...merged.cells, merged.error]);
    written.rows++;
    if (merged.error !== null) written.errorRows++;
    if (xml.length >= SEGMENT_PIECE_CHARS) {
      await deps.sheet.add(deflateSegment(xml));
      xml = "";
    }
  }
  if (xml !== "") await deps.sheet.add(deflateSegment(xml));
  const expected = shard.end - shard.start;
  if (duplicates > 0 || written.rows !== expected) {
    deps.log.warn(
      { shardId: shard.id, duplicates, rows: written.rows, expected },
      duplicates > 0 ? "duplicate results dropped" : "slice row count differs from its range",
    );
  }
  return written;
}
