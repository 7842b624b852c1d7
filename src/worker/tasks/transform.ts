/**
 * `transform`: a user module from the workers' plugin directory, run on a piscina pool of worker
 * threads (one per core) so CPU-heavy rows use every core. Rows travel to the threads in batches
 * of `batchSize`, cells encoded (EncodedCell) on the way in, results encoded on the way out.
 *
 * Plugin module contract (`${pluginDir}/${module}.mjs`, or `.js`; see plugins/README.md):
 *   export default function (row, options) → Record<string, value> | Promise<Record<string, value>>
 *   export const columns = ["…"]   // optional: result columns known up front
 * `row` is `{ header: value }` (dates as Date); `options` is the spec's `task.options.options`.
 * A throw for one row becomes that row's `e`; the other rows carry on.
 */
import { access } from "node:fs/promises";
import { availableParallelism } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Piscina } from "piscina";
import { describeError, ShardfleetError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import {
  type EncodedCell,
  encodeCell,
  type ResultRow,
  resultRowSchema,
} from "../../shared/schemas/cells.ts";
import type { TransformOptions } from "../../shared/schemas/tasks.ts";
import { childSignal, oneLine, type TaskContext, type TaskRow, type TaskRunner } from "./task.ts";

const THREAD_FILE = fileURLToPath(new URL("./transform-thread.mjs", import.meta.url));
const PLUGIN_EXTENSIONS = [".mjs", ".js"] as const;

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

  /** Use `createTransformRunner`: the plugin must be found and loaded first. */
  private constructor(
    pool: Piscina,
    modulePath: string,
    options: TransformOptions,
    columns: string[],
  ) {
    this.#pool = pool;
    this.#modulePath = modulePath;
    this.#options = options;
    this.columns = columns;
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
    return new TransformRunner(pool, modulePath, options, columns);
  }

  async runRows(rows: TaskRow[], ctx: TaskContext): Promise<ResultRow[]> {
    const { batchSize } = this.#options;
    const batches: TaskRow[][] = [];
    for (let at = 0; at < rows.length; at += batchSize)
      batches.push(rows.slice(at, at + batchSize));
    const { signal, dispose } = childSignal(ctx.signal);
    try {
      const results = await Promise.all(
        batches.map((batch) => this.#runBatch(batch, { ...ctx, signal })),
      );
      return results.flat();
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
      // The thread died (process.exit, out of memory…) under this batch: its rows fail, the
      // pool replaces the thread and the other batches carry on.
      const e = `transform thread failed: ${oneLine(describeError(err), 300)}`;
      ctx.logger.warn({ err, rows: batch.length }, "transform thread failed under a batch");
      ctx.onRowDone?.(batch.length);
      return batch.map((row) => ({ i: row.index, e }));
    }
    const parsed = resultRowSchema.array().length(batch.length).parse(out);
    ctx.onRowDone?.(batch.length);
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
