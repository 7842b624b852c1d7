/**
 * The sweep's view of an operation's shards, from what S3 holds under its shards prefix: done
 * markers, attempt records (their start, last refresh and end) and re-drive records; and the
 * re-drive record itself, whose one writer this module is (`keys.redrive`, written before
 * nothing: a re-drive that is not recorded is only sent again).
 */
import { mapLimit } from "../../shared/async.ts";
import type { Clock } from "../../shared/clock.ts";
import { keys, parseShardKey, redriveTimeOf } from "../../shared/keys.ts";
import type { ObjectStore } from "../../shared/object-store.ts";
import type { Manifest } from "../../shared/schemas/operation.ts";
import {
  type Attempt,
  attemptSchema,
  type Redrive,
  redriveSchema,
} from "../../shared/schemas/shard.ts";
import type { RedriveReason, ShardSigns } from "./sweep-policy.ts";

/** Reads shard signs; caches the attempt records that ended (they never change again). */
export class ShardSignsReader {
  readonly #store: ObjectStore;
  readonly #clock: Clock;
  readonly #ended = new Map<string, Attempt>();

  constructor(deps: { store: ObjectStore; clock: Clock }) {
    this.#store = deps.store;
    this.#clock = deps.clock;
  }

  /** The signs of every shard the manifest lists. */
  async read(manifest: Manifest, signal?: AbortSignal): Promise<ShardSigns[]> {
    const shards = manifest.shards ?? [];
    const signs = new Map<string, ShardSigns>(shards.map((s) => [s.id, { id: s.id, done: false }]));
    const attemptKeys: Array<{ shard: ShardSigns; key: string }> = [];
    for (const key of await this.#store.list(keys.shardsPrefix(manifest.id), signal)) {
      const parsed = parseShardKey(key);
      const shard = parsed && signs.get(parsed.shardId);
      if (!parsed || !shard) continue;
      if (parsed.rest === "done.json") shard.done = true;
      else if (parsed.rest.startsWith("attempts/")) attemptKeys.push({ shard, key });
      else {
        const at = redriveTimeOf(parsed.rest);
        if (at !== undefined) {
          shard.lastRedriveMs = Math.max(shard.lastRedriveMs ?? -1, at);
          shard.lastSignMs = Math.max(shard.lastSignMs ?? -1, at);
        }
      }
    }
    await mapLimit(
      attemptKeys.filter(({ shard }) => !shard.done),
      16,
      async ({ shard, key }) => {
        const attempt = await this.#attempt(key, signal);
        if (!attempt) return;
        const started = Date.parse(attempt.startedAt);
        const last = Math.max(
          started,
          Date.parse(attempt.updatedAt ?? attempt.startedAt),
          Date.parse(attempt.endedAt ?? attempt.startedAt),
        );
        shard.lastAttemptStartMs = Math.max(shard.lastAttemptStartMs ?? -1, started);
        shard.lastSignMs = Math.max(shard.lastSignMs ?? -1, last);
      },
    );
    return [...signs.values()];
  }

  /** Writes the re-drive record of one shard. */
  async recordRedrive(
    manifest: Pick<Manifest, "id">,
    shardId: string,
    reason: RedriveReason,
    signal?: AbortSignal,
  ): Promise<void> {
    const now = this.#clock.now();
    const body: Redrive = {
      v: 1,
      operationId: manifest.id,
      shardId,
      at: new Date(now).toISOString(),
      reason,
    };
    await this.#store.putJson(keys.redrive(manifest.id, shardId, now), redriveSchema, body, signal);
  }

  /** Drops what is cached for an operation that ended. */
  forget(operationId: string): void {
    const prefix = keys.shardsPrefix(operationId);
    for (const key of this.#ended.keys()) if (key.startsWith(prefix)) this.#ended.delete(key);
  }

  async #attempt(key: string, signal?: AbortSignal): Promise<Attempt | undefined> {
    const cached = this.#ended.get(key);
    if (cached) return cached;
    // An unreadable attempt record is no sign of life.
    const attempt = await this.#store.getJson(key, attemptSchema, signal).catch(() => undefined);
    if (attempt && attempt.cause !== "running") this.#ended.set(key, attempt);
    return attempt;
  }
}
