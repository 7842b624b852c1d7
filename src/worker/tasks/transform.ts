/**
 * `transform`: a user module from the workers' plugin directory, run on a piscina pool of worker
 * threads (one per core) so CPU-heavy rows use every core. Rows travel to the threads in batches
 * of `batchSize`, as flat arrays (the headers once, then each row's cells in header order: dates
 * travel as Dates, structured clone keeps them) and come back as one entry per row (see
 * `batchResultSchema`): a batch costs a few objects to clone, not two per row. For a cheap
 * plugin that hop was most of the task's CPU.
 *
 * Plugin module contract (`${pluginDir}/${module}.mjs`, or `.js`; see plugins/README.md):
 *   export default function (row, options) → Record<string, value> | Promise<Record<string, value>>
 *   export const columns = ["…"]   // optional: result columns known up front
 * `row` is `{ header: value }` (dates as Date); `options` is the spec's `task.options.options`.
 * A throw for one row becomes that row's `e`; the other rows carry on. A thread that dies
 * (`process.exit`, out of memory) fails the whole call with TASK_FAILED: that is the plugin
 * breaking the worker, an error attempt of the shard, not a row error.
 */
import { setMaxListeners } from "node:events";
import { access } from "node:fs/promises";
import { availableParallelism } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Piscina } from "piscina";
import { z } from "zod";
import { describeError, ShardfleetError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import { PLUGIN_EXTENSIONS } from "../../shared/plugins.ts";
import { type Cell, encodedCellSchema, type ResultRow } from "../../shared/schemas/cells.ts";
import type { TransformOptions } from "../../shared/schemas/tasks.ts";
import { Limiter } from "./limiter.ts";
import { childSignal, oneLine, type TaskContext, type TaskRow, type TaskRunner } from "./task.ts";

const THREAD_FILE = fileURLToPath(new URL("./transform-thread.mjs", import.meta.url));

export interface TransformDeps {
  logger: Logger;
}

export interface TransformRunnerOptions {
  /** Directory holding plugin modules. */
  pluginDir: string;
  /** Worker threads. @default os.availableParallelism() */
  threads?: number;
  /**
   * The operation's input headers, the order of a row's `cells` (TaskRow). @default the keys of
   * each batch's rows' `values`
   */
  headers?: readonly string[];
}

/**
 * What a thread returns for a batch (transform-thread.mjs): the result columns it saw, and per
 * row, in batch order, the error text, or null for a result with no columns, or the result's
 * values by position in `columns` (undefined: the row did not return that column).
 */
export const batchResultSchema = z.object({
  columns: z.array(z.string()),
  rows: z.array(z.union([z.string(), z.null(), z.array(encodedCellSchema.optional())])),
});
export type BatchResult = z.infer<typeof batchResultSchema>;

/** The ResultRows of a batch whose input row indices are `indices`. */
export function resultRowsOf(result: BatchResult, indices: readonly number[]): ResultRow[] {
  if (result.rows.length !== indices.length) {
    throw new Error(`${result.rows.length} results for ${indices.length} rows`);
  }
  const out: ResultRow[] = new Array(indices.length);
  for (let k = 0; k < indices.length; k++) {
    const i = indices[k] as number;
    const row = result.rows[k];
    if (typeof row === "string") {
      out[k] = { i, e: row };
      continue;
    }
    const r: Record<string, z.infer<typeof encodedCellSchema>> = {};
    if (row) {
      for (let c = 0; c < row.length; c++) {
        const value = row[c];
        const column = result.columns[c];
        if (value !== undefined && column !== undefined) r[column] = value;
      }
    }
    out[k] = { i, r };
  }
  return out;
}

/** A batch as a thread takes it: the headers once, each row's cells flat in header order. */
function batchInput(
  batch: readonly TaskRow[],
  known: readonly string[] | undefined,
): { headers: readonly string[]; indices: number[]; cells: Cell[] } {
  const indices: number[] = new Array(batch.length);
  const cells: Cell[] = [];
  const headers = known ?? headersOf(batch);
  const width = headers.length;
  for (let k = 0; k < batch.length; k++) {
    const row = batch[k] as TaskRow;
    indices[k] = row.index;
    const inOrder = known && row.cells?.length === width ? row.cells : undefined;
    for (let c = 0; c < width; c++) {
      cells.push(inOrder ? (inOrder[c] ?? null) : (row.values[headers[c] as string] ?? null));
    }
  }
  return { headers, indices, cells };
}

/** The keys of the rows' values, in first-seen order (rows made without the operation's headers). */
function headersOf(batch: readonly TaskRow[]): string[] {
  const seen = new Set<string>();
  for (const row of batch) for (const key of Object.keys(row.values)) seen.add(key);
  return [...seen];
}

/** Finds `${dir}/${name}.mjs` or `.js`; throws TASK_FAILED naming the plugin and directory. */
export async function resolvePlugin(pluginDir: string, name: string): Promise<string> {
  const dir = path.resolve(pluginDir);
  for (const ext of PLUGIN_EXTENSIONS) {
    const candidate = path.join(dir, `${name}${ext}`);
    try {
      await access(candidate);
      return candidate;
    } catch {
      // try the next extension
    }
  }
  throw new ShardfleetError(
    "TASK_FAILED",
    `transform plugin "${name}" not found in ${dir} (looked for ${PLUGIN_EXTENSIONS.map((e) => name + e).join(", ")})`,
    { details: { plugin: name, pluginDir: dir } },
  );
}

export class TransformRunner implements TaskRunner {
  readonly columns: string[];
  readonly #pool: Piscina;
  readonly #modulePath: string;
  readonly #options: TransformOptions;
  readonly #threads: number;
  readonly #headers: readonly string[] | undefined;

  /** Use `createTransformRunner`: the plugin must be found and loaded first. */
  private constructor(
    pool: Piscina,
    modulePath: string,
    options: TransformOptions,
    columns: string[],
    threads: number,
    headers: readonly string[] | undefined,
  ) {
    this.#pool = pool;
    this.#headers = headers;
    this.#modulePath = modulePath;
    this.#options = options;
    this.columns = columns;
    this.#threads = threads;
  }

  /**
   * Finds the plugin, starts the pool and loads the plugin once in a thread (so a syntax error
   * or a missing default export fails here, not row by row). Throws TASK_FAILED naming it.
   */
  static async create(
    deps: TransformDeps,
    options: TransformOptions,
    runnerOptions: TransformRunnerOptions,
  ): Promise<TransformRunner> {
    const modulePath = await resolvePlugin(runnerOptions.pluginDir, options.module);
    const threads = runnerOptions.threads ?? availableParallelism();
    const pool = new Piscina({
      filename: THREAD_FILE,
      maxThreads: threads,
      minThreads: Math.min(1, threads),
      idleTimeout: 30_000,
      // The thread is plain JS: no need for the parent's loaders (tsx, vitest) in every thread.
      execArgv: [],
    });
    let columns: string[];
    try {
      ({ columns } = (await pool.run({ kind: "describe", modulePath })) as { columns: string[] });
    } catch (err) {
      await pool.destroy();
      throw new ShardfleetError(
        "TASK_FAILED",
        `transform plugin "${options.module}" (${modulePath}) cannot be loaded: ${oneLine(describeError(err))}`,
        { cause: err, details: { plugin: options.module } },
      );
    }
    deps.logger.debug({ plugin: modulePath, threads, columns }, "transform runner ready");
    return new TransformRunner(pool, modulePath, options, columns, threads, runnerOptions.headers);
  }

  async runRows(rows: TaskRow[], ctx: TaskContext): Promise<ResultRow[]> {
    const { batchSize } = this.#options;
    const batches: TaskRow[][] = [];
    for (let at = 0; at < rows.length; at += batchSize)
      batches.push(rows.slice(at, at + batchSize));
    const { signal, dispose } = childSignal(ctx.signal);
    // Its own controller so one broken batch cancels the others (their results are moot).
    const broken = new AbortController();
    const batchSignal = AbortSignal.any([signal, broken.signal]);
    setMaxListeners(0, batchSignal);
    // Batches go to the pool in input order, a few per thread at a time: handed all at once,
    // piscina runs them in no particular order, and checkpoints (which take the contiguous
    // prefix of finished rows) would stall behind the stragglers.
    const window = new Limiter(this.#threads * 2);
    try {
      const results = await Promise.all(
        batches.map((batch) =>
          window
            .run(() => this.#runBatch(batch, { ...ctx, signal: batchSignal }), batchSignal)
            .catch((err: unknown) => {
              if (!broken.signal.aborted) broken.abort(err);
              throw err;
            }),
        ),
      );
      return results.flat();
    } catch (err) {
      ctx.signal.throwIfAborted();
      // The first failure, not the cancellations it caused.
      throw broken.signal.aborted ? broken.signal.reason : err;
    } finally {
      dispose();
    }
  }

  async #runBatch(batch: TaskRow[], ctx: TaskContext): Promise<ResultRow[]> {
    const input = batchInput(batch, this.#headers);
    let out: unknown;
    try {
      out = await this.#pool.run(
        { kind: "rows", modulePath: this.#modulePath, options: this.#options.options, ...input },
        { signal: ctx.signal },
      );
    } catch (err) {
      ctx.signal.throwIfAborted();
      // The thread died (process.exit, out of memory…) under this batch. Plugin throws never
      // get here (they become row errors in the thread), so this is the plugin breaking the
      // worker: the attempt fails (and counts towards the poison limit) rather than passing
      // the rows off as done with made-up errors.
      throw new ShardfleetError(
        "TASK_FAILED",
        `transform thread failed: ${oneLine(describeError(err), 300)}`,
        { cause: err, details: { rows: batch.length, firstRow: batch[0]?.index } },
      );
    }
    const parsed = resultRowsOf(batchResultSchema.parse(out), input.indices);
    ctx.onRowDone?.(batch.length);
    ctx.onResults?.(parsed);
    return parsed;
  }

  async close(): Promise<void> {
    await this.#pool.destroy();
  }
}

export function createTransformRunner(
  deps: TransformDeps,
  options: TransformOptions,
  runnerOptions: TransformRunnerOptions,
): Promise<TransformRunner> {
  return TransformRunner.create(deps, options, runnerOptions);
}
