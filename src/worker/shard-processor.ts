/**
 * Processes one shard message end to end: parse it, load the operation (manifest + task runner,
 * cached per operation), read the shard's input slice, run the rows, write the result chunk and
 * commit `done.json` with a conditional put (first finisher wins).
 *
 * Each shard gets one AbortSignal from the caller; everything it does (S3 calls, the task's
 * requests or threads) stops when it aborts, and nothing is committed. Checkpoints slot in
 * between `#runRows` segments later: today a shard is one segment and one chunk.
 */
import { randomUUID } from "node:crypto";
import { createInterface } from "node:readline";
import { Readable } from "node:stream";
import { type Clock, systemClock } from "../shared/clock.ts";
import {
  describeError,
  InvalidMessageError,
  NotFoundError,
  ShardfleetError,
} from "../shared/errors.ts";
import { keys } from "../shared/keys.ts";
import type { Logger } from "../shared/logger.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import {
  type Cell,
  decodeCell,
  inputRowSchema,
  type ResultRow,
  resultRowSchema,
} from "../shared/schemas/cells.ts";
import { type Manifest, manifestSchema, specOf } from "../shared/schemas/operation.ts";
import {
  type Attempt,
  attemptSchema,
  type ShardMessage,
  shardDoneSchema,
  shardMessageSchema,
} from "../shared/schemas/shard.ts";
import { createTaskRunner } from "./tasks/registry.ts";
import type { TaskRow, TaskRunner } from "./tasks/task.ts";

/** Parses a queue message body. Throws InvalidMessageError (→ DLQ) naming what is wrong. */
export function parseShardMessage(body: string): ShardMessage {
  let raw: unknown;
  try {
    raw = JSON.parse(body);
  } catch {
    throw new InvalidMessageError(`shard message is not JSON: ${body.slice(0, 80)}`);
  }
  const parsed = shardMessageSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.map(String).join(".") || "(root)";
    throw new InvalidMessageError(`shard message ${where}: ${issue.message}`, {
      details: { path: where },
    });
  }
  try {
    // The key layout is strict about ids; a message it refuses can never be processed.
    keys.shardPrefix(parsed.data.operationId, parsed.data.shardId);
  } catch (err) {
    throw new InvalidMessageError(`shard message: ${describeError(err)}`, { cause: err });
  }
  if (parsed.data.end < parsed.data.start) {
    throw new InvalidMessageError(
      `shard message: end ${parsed.data.end} is before start ${parsed.data.start}`,
    );
  }
  return parsed.data;
}

/** Builds the runner for an operation; injectable so tests can count or fake runners. */
export type RunnerFactory = (manifest: Manifest, logger: Logger) => Promise<TaskRunner>;

export interface ShardProcessorDeps {
  store: ObjectStore;
  logger: Logger;
  /** @default systemClock */
  clock?: Clock;
  /** @default createTaskRunner with the operation's spec, headers and `options.pluginDir` */
  createRunner?: RunnerFactory;
}

export interface ShardProcessorOptions {
  instanceId: string;
  market: "spot" | "on-demand";
  /** Where `transform` plugins live. */
  pluginDir: string;
  /** Idle operations whose manifest and runner stay cached (pools, threads). @default 4 */
  maxCachedOperations?: number;
}

export interface ShardOutcome {
  operationId: string;
  shardId: string;
  /**
   * `committed`: this attempt's done.json won. `lost`: another worker committed first (this
   * attempt's identical chunk is harmless). `already-done`: done.json existed before we started.
   */
  status: "committed" | "lost" | "already-done";
  rows: number;
  errorRows: number;
}

export interface ProcessContext {
  /** Aborts the shard: stop working, commit nothing, reject with the signal's reason. */
  signal: AbortSignal;
}

interface OperationEntry {
  ready: Promise<{ manifest: Manifest; runner: TaskRunner }>;
  users: number;
  lastUsed: number;
}

/** Result columns: the task's declared ones, then any others in first-seen order. */
export function resultColumns(
  declared: readonly string[],
  results: readonly ResultRow[],
): string[] {
  const seen = new Set(declared);
  const columns = [...declared];
  for (const row of results) {
    for (const column of Object.keys(row.r ?? {})) {
      if (!seen.has(column)) {
        seen.add(column);
        columns.push(column);
      }
    }
  }
  return columns;
}

/** NDJSON in ~64 KiB buffers: lib-storage wants bytes, and one buffer per row is wasteful. */
async function* ndjson(rows: readonly ResultRow[]): AsyncGenerator<Buffer> {
  let pending = "";
  for (const row of rows) {
    pending += `${JSON.stringify(resultRowSchema.parse(row))}\n`;
    if (pending.length >= 64 * 1024) {
      yield Buffer.from(pending);
      pending = "";
    }
  }
  if (pending) yield Buffer.from(pending);
}

export class ShardProcessor {
  readonly #store: ObjectStore;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #createRunner: RunnerFactory;
  readonly #options: ShardProcessorOptions;
  readonly #maxCached: number;
  readonly #operations = new Map<string, OperationEntry>();
  #closed = false;

  constructor(deps: ShardProcessorDeps, options: ShardProcessorOptions) {
    this.#store = deps.store;
    this.#logger = deps.logger;
    this.#clock = deps.clock ?? systemClock;
    this.#options = options;
    this.#maxCached = options.maxCachedOperations ?? 4;
    this.#createRunner =
      deps.createRunner ??
      ((manifest, logger) =>
        createTaskRunner(
          specOf(manifest).task,
          { logger, pluginDir: options.pluginDir, clock: this.#clock },
          { headers: manifest.headers },
        ));
  }

  /**
   * Processes one message body. Resolves once the shard is committed (by us or anyone);
   * throws InvalidMessageError for a body that can never succeed, anything else for a failure
   * worth retrying, or the signal's reason when aborted.
   */
  async process(body: string, ctx: ProcessContext): Promise<ShardOutcome> {
    if (this.#closed) throw new Error("shard processor is closed");
    const message = parseShardMessage(body);
    const { operationId, shardId } = message;
    const logger = this.#logger.child({ operationId, shardId });
    const { signal } = ctx;

    // A redelivery after a commit (or a straggler copy): nothing left to do.
    const doneKey = keys.done(operationId, shardId);
    if (await this.#store.exists(doneKey, signal)) {
      logger.info("shard already committed; skipping");
      return { operationId, shardId, status: "already-done", rows: 0, errorRows: 0 };
    }

    const entry = this.#acquire(operationId);
    try {
      const { manifest, runner } = await entry.ready;
      return await this.#run(message, manifest, runner, logger, signal);
    } finally {
      entry.users--;
      entry.lastUsed = this.#clock.now();
      this.#evictIdle();
    }
  }

  /** Closes every cached runner. */
  async close(): Promise<void> {
    this.#closed = true;
    const entries = [...this.#operations.values()];
    this.#operations.clear();
    await Promise.all(entries.map((e) => this.#closeEntry(e)));
  }

  async #run(
    message: ShardMessage,
    manifest: Manifest,
    runner: TaskRunner,
    logger: Logger,
    signal: AbortSignal,
  ): Promise<ShardOutcome> {
    const { operationId, shardId, start, end } = message;
    const attempt: Attempt = {
      v: 1,
      attemptId: randomUUID(),
      operationId,
      shardId,
      instanceId: this.#options.instanceId,
      market: this.#options.market,
      startedAt: new Date(this.#clock.now()).toISOString(),
      rowsDone: 0,
      cause: "running",
    };
    const attemptKey = keys.attempt(operationId, shardId, attempt.attemptId);
    await this.#store.putJson(attemptKey, attemptSchema, attempt, signal);
    logger.info({ attemptId: attempt.attemptId, start, end }, "shard started");

    try {
      const rows = await this.#readSlice(message, manifest.headers, signal);
      const results = await runner.runRows(rows, {
        signal,
        logger,
        onRowDone: (n) => {
          attempt.rowsDone += n;
        },
      });
      if (results.length !== rows.length) {
        throw new ShardfleetError(
          "INTERNAL",
          `task returned ${results.length} results for ${rows.length} rows`,
        );
      }

      const chunk = { key: keys.chunk(operationId, shardId, start, end), start, end };
      await this.#store.upload(chunk.key, Readable.from(ndjson(results)), {
        contentType: "application/x-ndjson",
        signal,
      });
      const errorRows = results.filter((r) => r.e !== undefined).length;
      const columns = resultColumns(runner.columns, results);
      signal.throwIfAborted();
      const won = await this.#store.putJsonIfAbsent(
        keys.done(operationId, shardId),
        shardDoneSchema,
        {
          v: 1,
          operationId,
          shardId,
          attemptId: attempt.attemptId,
          instanceId: this.#options.instanceId,
          rows: results.length,
          errorRows,
          columns,
          chunks: [chunk],
          committedAt: new Date(this.#clock.now()).toISOString(),
        },
        signal,
      );
      if (won) logger.info({ rows: results.length, errorRows }, "shard committed");
      else logger.info("shard already committed by another worker");
      await this.#endAttempt(attemptKey, attempt, won ? "completed" : "lost", undefined, logger);
      return {
        operationId,
        shardId,
        status: won ? "committed" : "lost",
        rows: results.length,
        errorRows,
      };
    } catch (err) {
      const cause = signal.aborted ? "interrupted" : "error";
      await this.#endAttempt(attemptKey, attempt, cause, describeError(err), logger);
      throw err;
    }
  }

  /** Best effort: the attempt record is for people and the scheduler, never worth a retry. */
  async #endAttempt(
    key: string,
    attempt: Attempt,
    cause: Attempt["cause"],
    error: string | undefined,
    logger: Logger,
  ): Promise<void> {
    const ended: Attempt = {
      ...attempt,
      cause,
      endedAt: new Date(this.#clock.now()).toISOString(),
      ...(error === undefined ? {} : { error }),
    };
    try {
      // Its own short deadline: the shard's signal may be the reason we are here.
      await this.#store.putJson(key, attemptSchema, ended, AbortSignal.timeout(10_000));
    } catch (err) {
      logger.warn({ err, attemptId: attempt.attemptId }, "cannot write the attempt record");
    }
  }

  /** The shard's input rows, cells decoded and keyed by header. */
  async #readSlice(
    message: ShardMessage,
    headers: string[],
    signal: AbortSignal,
  ): Promise<TaskRow[]> {
    const { operationId, shardId, start, end } = message;
    const key = keys.shardInput(operationId, shardId);
    const stream = await this.#store.getStream(key, signal);
    if (!stream) throw new NotFoundError(`shard input ${key} does not exist`);
    const rows: TaskRow[] = [];
    let line = 0;
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
      const { i, c } = parsed.data;
      if (i < start || i >= end) {
        throw new ShardfleetError(
          "INTERNAL",
          `shard input ${key} line ${line}: row ${i} is outside the shard [${start}, ${end})`,
        );
      }
      const values: Record<string, Cell> = {};
      headers.forEach((header, at) => {
        const cell = c[at];
        values[header] = cell === undefined ? null : decodeCell(cell);
      });
      rows.push({ index: i, values });
    }
    return rows;
  }

  #acquire(operationId: string): OperationEntry {
    let entry = this.#operations.get(operationId);
    if (!entry) {
      const created: OperationEntry = {
        ready: this.#load(operationId),
        users: 0,
        lastUsed: this.#clock.now(),
      };
      // A failed load is not cached: the next delivery tries again.
      created.ready.catch(() => {
        if (this.#operations.get(operationId) === created) this.#operations.delete(operationId);
      });
      this.#operations.set(operationId, created);
      entry = created;
    }
    entry.users++;
    return entry;
  }

  async #load(operationId: string): Promise<{ manifest: Manifest; runner: TaskRunner }> {
    const logger = this.#logger.child({ operationId });
    const manifest = await this.#store.getJson(
      keys.manifest(operationId),
      manifestSchema,
      AbortSignal.timeout(30_000),
    );
    if (!manifest) throw new NotFoundError(`operation ${operationId} has no manifest`);
    const runner = await this.#createRunner(manifest, logger);
    logger.info({ task: manifest.spec.task.name, columns: runner.columns }, "operation loaded");
    return { manifest, runner };
  }

  /** Drops the least recently used idle operations beyond the cache size. */
  #evictIdle(): void {
    if (this.#operations.size <= this.#maxCached) return;
    const idle = [...this.#operations.entries()]
      .filter(([, e]) => e.users === 0)
      .sort(([, a], [, b]) => a.lastUsed - b.lastUsed);
    for (const [id, entry] of idle) {
      if (this.#operations.size <= this.#maxCached) break;
      this.#operations.delete(id);
      void this.#closeEntry(entry);
    }
  }

  async #closeEntry(entry: OperationEntry): Promise<void> {
    try {
      const { runner } = await entry.ready;
      await runner.close();
    } catch {
      // A load that failed has nothing to close.
    }
  }
}
