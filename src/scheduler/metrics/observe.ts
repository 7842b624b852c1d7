/**
 * Reads what `/metrics` needs about each operation from S3: the manifest, commit markers (rows
 * and shards), the attempt records workers write (reclaims with and without notice), the fleet
 * record (instances, on-demand fallbacks, straggler copies) and the cost report. What cannot
 * change any more is kept: finished attempts, and whole operations once ended a while ago.
 */
import { mapLimit } from "../../shared/async.ts";
import { keys, parseShardKey } from "../../shared/keys.ts";
import type { ObjectStore } from "../../shared/object-store.ts";
import { costReportSchema } from "../../shared/schemas/cost.ts";
import { fleetRecordSchema } from "../../shared/schemas/fleet.ts";
import { type Manifest, TERMINAL_STATUSES, tenantOf } from "../../shared/schemas/operation.ts";
import { attemptSchema } from "../../shared/schemas/shard.ts";
import { listOperationIds, loadManifest, ShardProgressReader, viewOf } from "../operations.ts";
import type { OperationObservation } from "./sample.ts";

type Cause = keyof OperationObservation["attempts"];

export class OperationObserver {
  readonly #store: ObjectStore;
  readonly #progress: ShardProgressReader;
  /** Attempt records that ended (they never change again), by key. */
  readonly #ended = new Map<string, Cause>();
  /** Operations ended longer than `settleMs` ago: final. */
  readonly #final = new Map<string, OperationObservation>();
  readonly #settleMs: number;

  /** @param options.settleMs how long after its end an operation is still re-read (scale-in). */
  constructor(deps: { store: ObjectStore }, options: { settleMs: number }) {
    this.#store = deps.store;
    this.#progress = new ShardProgressReader({ store: deps.store });
    this.#settleMs = options.settleMs;
  }

  async observeAll(nowMs: number, signal?: AbortSignal): Promise<OperationObservation[]> {
    const ids = await listOperationIds(this.#store, signal);
    const out = await mapLimit(ids, 8, async (id) => {
      const cached = this.#final.get(id);
      if (cached) return cached;
      const manifest = await loadManifest(this.#store, id, signal).catch(() => undefined);
      if (!manifest) return undefined;
      const observation = await this.#observe(manifest, signal);
      if (
        observation.finishedAtMs !== undefined &&
        nowMs - observation.finishedAtMs > this.#settleMs
      ) {
        this.#final.set(id, observation);
        this.#progress.forget(id);
      }
      return observation;
    });
    return out.filter((o): o is OperationObservation => o !== undefined);
  }

  async #observe(manifest: Manifest, signal?: AbortSignal): Promise<OperationObservation> {
    const id = manifest.id;
    const [progress, attempts, fleet, cost] = await Promise.all([
      this.#progress.read(manifest, { attempts: false, ...(signal ? { signal } : {}) }),
      this.#attempts(manifest, signal),
      this.#store.getJson(keys.fleet(id), fleetRecordSchema, signal),
      TERMINAL_STATUSES.has(manifest.status)
        ? this.#store.getJson(keys.cost(id), costReportSchema, signal)
        : Promise.resolve(undefined),
    ]);
    const view = viewOf(manifest, progress);
    const runningShards = [...attempts.runningShards].filter((s) => !progress.done.has(s)).length;
    const total = progress.counts.total;
    const events = fleet?.events ?? [];
    const terminal = TERMINAL_STATUSES.has(manifest.status);
    return {
      id,
      tenant: tenantOf(manifest),
      status: manifest.status,
      ...(terminal ? { finishedAtMs: Date.parse(manifest.finishedAt ?? manifest.updatedAt) } : {}),
      rows: view.rows,
      shards: {
        done: progress.counts.done,
        failed: progress.counts.failed,
        running: runningShards,
        pending: total - progress.counts.done - progress.counts.failed - runningShards,
      },
      attempts: attempts.causes,
      fallbacks: events.filter((e) => e.kind === "fallback-on-demand").length,
      stragglerCopies: events.filter((e) => e.kind === "straggler-copied").length,
      instances: (fleet?.instances ?? []).map((i) => ({
        id: i.id,
        market: i.market,
        role: i.role,
        type: i.type,
        state: i.state,
        launchedAtMs: Date.parse(i.launchedAt),
        sinceMs: Date.parse(i.since),
      })),
      ...(cost ? { costUsd: cost.totalUsd } : {}),
    };
  }

  /** Attempt causes of the operation, and the shards with an attempt still running. */
  async #attempts(manifest: Manifest, signal?: AbortSignal) {
    const causes = { running: 0, completed: 0, interrupted: 0, lost: 0, error: 0 };
    const runningShards = new Set<string>();
    const attemptKeys = (await this.#store.list(keys.shardsPrefix(manifest.id), signal)).filter(
      (k) => parseShardKey(k)?.rest.startsWith("attempts/"),
    );
    const read = await mapLimit(attemptKeys, 16, async (key) => {
      const known = this.#ended.get(key);
      if (known) return { key, cause: known };
      const attempt = await this.#store.getJson(key, attemptSchema, signal).catch(() => undefined);
      if (!attempt) return undefined;
      if (attempt.cause !== "running") this.#ended.set(key, attempt.cause);
      return { key, cause: attempt.cause };
    });
    for (const r of read) {
      if (!r) continue;
      causes[r.cause]++;
      if (r.cause === "running") runningShards.add(parseShardKey(r.key)!.shardId);
    }
    return { causes, runningShards };
  }
}
