/**
 * The splitter: streams an operation's input workbook once, writes each shard's rows to S3 as
 * an NDJSON slice (`keys.shardInput`), then puts one message per shard on the work queue.
 *
 * Row identity: every data row gets `i`, its 0-based index among the data rows the reader
 * yields (fully empty rows are skipped, see read-rows.ts). Results carry `i`, so the merger can
 * de-duplicate and order them. Each row is fitted to the header: missing cells are null; cells
 * beyond the last header have no column to go to, so they are left out of the task's input and
 * the row carries a note saying so (`n`, its error in the output) — never dropped silently. The
 * same holds for text cut to Excel's cell limit and for a formula with no cached value.
 *
 * The workbook is read from S3 by random access (ranged GETs through its central directory),
 * with the same zip limits as at submission; more data rows than `limits.maxRows` fail the
 * split.
 *
 * Crash safety: slices are rewritten identically by a re-run (same input, same boundaries), and
 * a shard's message goes out only after its slice exists, so a worker never receives a shard
 * whose slice is missing.
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
import { type ShardQueue, SQS_BATCH_MAX } from "../shared/shard-queue.ts";
import { objectByteSource } from "./workbook/byte-source.ts";
import { parseHeaderRow } from "./workbook/inspect.ts";
import { checkRowCount, DEFAULT_WORKBOOK_LIMITS, type WorkbookLimits } from "./workbook/limits.ts";
import { readWorkbookRows } from "./workbook/read-rows.ts";
import { cutLongCells, rowProblems } from "./workbook/row-checks.ts";
import { fitRow, isEmptyRow } from "./workbook/row-shape.ts";

export const NDJSON_CONTENT_TYPE = "application/x-ndjson";

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
  let pending: ShardMessage[] = [];
  const writeSlice = async () => {
    const shard = Math.floor((next - 1) / shardSize);
    const key = keys.shardInput(op, shardIdFor(shard));
    const body = Buffer.from(lines.join(""));
    lines = [];
    // upload(): a slice of wide rows can pass the single-PUT limit.
    await deps.store.upload(key, Readable.from([body]), {
      contentType: NDJSON_CONTENT_TYPE,
      signal,
    });
    log.debug({ shardId: shardIdFor(shard), bytes: body.length }, "slice written");
    // Queue shards as their slices land (10 a batch) so workers start while the split goes on.
    pending.push({
      v: 1,
      operationId: op,
      shardId: shardIdFor(shard),
      start: shard * shardSize,
      end: next,
    });
    if (pending.length === SQS_BATCH_MAX) await flush();
  };
  const flush = async () => {
    const batch = pending;
    pending = [];
    if (batch.length > 0 && options.enqueue !== false)
      await deps.queue.sendShards(options.workQueueUrl, batch, signal);
  };

  try {
    for await (const row of rows) {
      if (headers === undefined) {
        headers = parseHeaderRow(row.cells);
        if (manifest.headers.length > 0 && !sameHeaders(manifest.headers, headers)) {
          // The merger labels columns with manifest.headers; a different row would mislabel them.
          throw new BadInputError(
            "WORKBOOK_INVALID",
            `the header row (${headers.join(", ")}) differs from the one read at submission (${manifest.headers.join(", ")})`,
          );
        }
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
      if (lines.length === shardSize) await writeSlice();
    }
    if (lines.length > 0) await writeSlice();
    await flush();
  } finally {
    await rows.return(undefined);
  }

  if (headers === undefined) throw new BadInputError("WORKBOOK_INVALID", "workbook is empty");
  if (next === 0) {
    throw new BadInputError("WORKBOOK_INVALID", "workbook has a header row but no data rows");
  }

  const shards = planShards(next, shardSize);
  log.info(
    { rows: next, notedRows: noted, shards: shards.length, shardSize, ms: clock.now() - started },
    "operation split",
  );
  return { rows: next, shards, headers };
}
