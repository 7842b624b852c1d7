/**
 * The operations a worker has loaded: manifest plus task runner (an undici pool, worker
 * threads), loaded once per operation and shared by all its shards. Entries in use are never
 * dropped; beyond `maxCached`, the least recently used idle ones are closed. A failed load is
 * not cached, so the next delivery tries again.
 *
 * The manifest is also how a worker learns that an operation was paused or cancelled: while
 * shards of an operation run, its status is read again every `controlPollMs`, and a shard about
 * to start asks for a reading no older than that (`refresh`). See ./operation-control.ts.
 *
 * The shards of a retry (`message.retry`) run with that retry's task options: they get an entry
 * of their own, loaded after the retry was asked for, never the runner of the first run.
 */
import type { Clock } from "../shared/clock.ts";
import { NotFoundError } from "../shared/errors.ts";
import { keys } from "../shared/keys.ts";
import type { Logger } from "../shared/logger.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import { type Manifest, manifestSchema } from "../shared/schemas/operation.ts";
import { OperationControl } from "./operation-control.ts";
import type { TaskRunner } from "./tasks/task.ts";

/** Builds the runner for an operation; injectable so tests can count or fake runners. */
export type RunnerFactory = (manifest: Manifest, logger: Logger) => Promise<TaskRunner>;

/** One cached operation; `users` counts the shards holding it (acquire/release). */
export interface OperationEntry {
  operationId: string;
  ready: Promise<{ manifest: Manifest; runner: TaskRunner }>;
  users: number;
  lastUsed: number;
  /** The operation's control state (pause, cancel), kept fresh while the entry is in use. */
  control: OperationControl;
}

export interface OperationCacheDeps {
  store: ObjectStore;
  logger: Logger;
  clock: Clock;
  createRunner: RunnerFactory;
}

export interface OperationCacheOptions {
  /** Idle operations whose manifest and runner stay cached. */
  maxCached: number;
  /** How often the status of an operation in use is read again (pause, cancel). @default 2000 */
  controlPollMs?: number;
}

export class OperationCache {
  readonly #store: ObjectStore;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #createRunner: RunnerFactory;
  readonly #maxCached: number;
  readonly #operations = new Map<string, OperationEntry>();
  readonly #controlPollMs: number;
  readonly #closing = new AbortController();
  #polling = false;

  constructor(deps: OperationCacheDeps, options: OperationCacheOptions) {
    this.#store = deps.store;
    this.#logger = deps.logger;
    this.#clock = deps.clock;
    this.#createRunner = deps.createRunner;
    this.#maxCached = options.maxCached;
    this.#controlPollMs = options.controlPollMs ?? 2000;
  }

  /**
   * The operation's entry (loading it if needed), held until `release`; `retry`: the number of
   * the retry whose shard it runs (its own entry).
   */
  acquire(operationId: string, retry?: number): OperationEntry {
    const key = retry === undefined ? operationId : `${operationId}#r${retry}`;
    let entry = this.#operations.get(key);
    if (!entry) {
      const control = new OperationControl();
      const created: OperationEntry = {
        operationId,
        ready: this.#load(operationId, control),
        users: 0,
        lastUsed: this.#clock.now(),
        control,
      };
      // A failed load is not cached: the next delivery tries again.
      created.ready.catch(() => {
        if (this.#operations.get(key) === created) this.#operations.delete(key);
      });
      this.#operations.set(key, created);
      entry = created;
    }
    entry.users++;
    this.#startPolling();
    return entry;
  }

  /**
   * Reads the operation's status again unless it was read within `controlPollMs`: a shard about
   * to start must not run for an operation paused or cancelled since it was cached.
   */
  async refresh(operationId: string, entry: OperationEntry, signal: AbortSignal): Promise<void> {
    if (this.#clock.now() - entry.control.checkedAt < this.#controlPollMs) return;
    const manifest = await this.#store.getJson(keys.manifest(operationId), manifestSchema, signal);
    if (manifest) entry.control.update(manifest.status, this.#clock.now());
  }

  /** While any entry is in use, reads its status every `controlPollMs`. */
  #startPolling(): void {
    if (this.#polling || this.#closing.signal.aborted) return;
    this.#polling = true;
    const signal = this.#closing.signal;
    void (async () => {
      try {
        while (!signal.aborted && [...this.#operations.values()].some((e) => e.users > 0)) {
          await this.#clock.sleep(this.#controlPollMs, signal);
          const inUse = [...this.#operations.entries()].filter(([, e]) => e.users > 0);
          await Promise.all(
            inUse.map(([, e]) =>
              this.refresh(e.operationId, e, signal).catch((err: unknown) => {
                // A failed read only delays the news: the next poll reads again.
                if (!signal.aborted)
                  this.#logger.warn({ err, operationId: e.operationId }, "status read failed");
              }),
            ),
          );
        }
      } catch {
        // Closed while sleeping.
      } finally {
        this.#polling = false;
      }
    })();
  }

  /** Gives back an entry from `acquire`; idle entries beyond the cache size are closed. */
  release(entry: OperationEntry): void {
    entry.users--;
    entry.lastUsed = this.#clock.now();
    this.#evictIdle();
  }

  /** Closes every cached runner. */
  async close(): Promise<void> {
    this.#closing.abort();
    const entries = [...this.#operations.values()];
    this.#operations.clear();
    await Promise.all(entries.map((e) => this.#closeEntry(e)));
  }

  async #load(
    operationId: string,
    control: OperationControl,
  ): Promise<{ manifest: Manifest; runner: TaskRunner }> {
    const logger = this.#logger.child({ operationId });
    const manifest = await this.#store.getJson(
      keys.manifest(operationId),
      manifestSchema,
      AbortSignal.timeout(30_000),
    );
    if (!manifest) throw new NotFoundError(`operation ${operationId} has no manifest`);
    control.update(manifest.status, this.#clock.now());
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
