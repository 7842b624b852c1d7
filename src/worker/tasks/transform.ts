/**
 * `transform`: a user module from the workers' plugin directory, run on a piscina pool of worker
 * threads (one per core) so CPU-heavy rows use every core. Rows travel to the threads in batches
 * of `batchSize`, cells encoded (EncodedCell) on the way in, results encoded on the way out.
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
import { describeError, ShardfleetError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import { PLUGIN_EXTENSIONS } from "../../shared/plugins.ts";
import {
  type EncodedCell,
  encodeCell,
  type ResultRow,
  resultRowSchema,
} from "../../shared/schemas/cells.ts";
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
}

interface ThreadRow {
  i: number;
  c: Record<string, EncodedCell>;
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

  /** Use `createTransformRunner`: the plugin must be found and loaded first. */
  private constructor(
    pool: Piscina,
    modulePath: string,
    options: TransformOptions,
    columns: string[],
    threads: number,
  ) {
    this.#pool = pool;
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
    return new TransformRunner(pool, modulePath, options, columns, threads);
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
    const rows: ThreadRow[] = batch.map((row) => ({
      i: row.index,
      c: Object.fromEntries(Object.entries(row.values).map(([k, v]) => [k, encodeCell(v)])),
    }));
    let out: unknown;
    try {
      out = await this.#pool.run(
        { kind: "rows", modulePath: this.#modulePath, options: this.#options.options, rows },
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
    const parsed = resultRowSchema.array().length(batch.length).parse(out);
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
