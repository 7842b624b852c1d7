/**
 * What the fleet manager observes about an operation's shards, from S3 alone: how many are
 * pending, which run (since when, interrupted how often), how long committed ones took, and which
 * instances are busy. The backlog is the scheduler's own count (objects it can list), never SQS's
 * approximate counters.
 *
 * The counting rule is ShardProgressReader's (operations.ts) — done = a commit marker, running =
 * an attempt still `running`, pending = the rest — with two refinements the fleet needs: a
 * `running` attempt on an instance known to be gone is not running (its message comes back; it
 * counts as an interruption), and while an operation is still splitting its shard count is the
 * slices written so far (at least one: work is coming).
 *
 * Commit markers and ended attempts never change once written, so they are read once and cached;
 * only attempts still `running` are read again on every pass.
 */

import { mapLimit } from "../../shared/async.ts";
import { keys, parseShardKey } from "../../shared/keys.ts";
import type { ObjectStore } from "../../shared/object-store.ts";
import { currentShards, type Manifest } from "../../shared/schemas/operation.ts";
import { type Attempt, attemptSchema, shardDoneSchema } from "../../shared/schemas/shard.ts";
import type { OperationState, RunningShard } from "./policy.ts";

/**
 * The error of a `lost` attempt that stopped because another worker committed first (the
 * worker's COMMITTED_ELSEWHERE, src/worker/attempts.ts; repeated here because the scheduler
 * does not import the worker). That is the straggler rule working, not an interruption.
 */
const COMMITTED_ELSEWHERE = "shard committed by another worker";

/** What one instance is doing, from the attempt records of the operations observed. */
export interface InstanceActivity {
  /** Attempts it runs right now. */
  running: number;
  /** When it last ended an attempt (ms), if it ever did. */
  lastEndedAt?: number;
}

export interface ShardObservation {
  /** The operation as the policy sees it. */
  state: OperationState;
  /** Activity by instance id (only instances with attempts in this operation). */
  activity: Map<string, InstanceActivity>;
}

interface ShardKeys {
  input: boolean;
  done?: string;
  attempts: string[];
}

export class ShardActivityReader {
  readonly #store: ObjectStore;
  /** Commit markers by key: written once. */
  readonly #done = new Map<string, { committedAt: number; failed: boolean }>();
  /** Attempts that ended, by key: written for the last time. */
  readonly #ended = new Map<string, Attempt>();
  /** First start → commit of committed shards, by done key. */
  readonly #durations = new Map<string, number>();

  constructor(deps: { store: ObjectStore }) {
    this.#store = deps.store;
  }

  /**
   * Reads the operation's shards.
   * @param isGone whether an instance is known to have ended (its `running` attempts are dead).
   */
  async read(
    manifest: Manifest,
    isGone: (instanceId: string) => boolean,
    signal?: AbortSignal,
  ): Promise<ShardObservation> {
    // The shards it waits for now (an open retry's); none yet while split or retry is planned.
    const shards = currentShards(manifest);
    const splitting = shards === undefined;
    // Slices live under scratch; they are only needed to count shards before the split ends.
    // Listed before the records: a shard is sliced before it runs, so every shard with an
    // attempt in the records listing is in the slices listing too.
    const slices = splitting
      ? await this.#store.list(keys.scratchShardsPrefix(manifest.id), signal)
      : [];
    const records = await this.#store.list(keys.shardsPrefix(manifest.id), signal);
    const byShard = new Map<string, ShardKeys>();
    for (const key of [...records, ...slices]) {
      const parsed = parseShardKey(key);
      if (!parsed) continue;
      let entry = byShard.get(parsed.shardId);
      if (!entry) {
        entry = { input: false, attempts: [] };
        byShard.set(parsed.shardId, entry);
      }
      if (parsed.scratch) {
        if (parsed.rest === "input.ndjson") entry.input = true;
      } else if (parsed.rest === "done.json") entry.done = key;
      else if (parsed.rest.startsWith("attempts/")) entry.attempts.push(key);
    }
    const expected = splitting
      ? [...byShard].filter(([, e]) => e.input).map(([id]) => id)
      : shards.map((s) => s.id);

    await mapLimit(
      expected.map((id) => byShard.get(id)?.done).filter((k): k is string => !!k),
      16,
      async (key) => {
        if (this.#done.has(key)) return;
        const marker = await this.#store.getJson(key, shardDoneSchema, signal);
        if (marker) {
          this.#done.set(key, {
            committedAt: Date.parse(marker.committedAt),
            failed: marker.failed !== undefined,
          });
        }
      },
    );

    const activity = new Map<string, InstanceActivity>();
    const running: RunningShard[] = [];
    const completedShardMs: number[] = [];
    let done = 0;
    await mapLimit(expected, 16, async (shardId) => {
      const entry = byShard.get(shardId);
      const doneKey = entry?.done;
      const marker = doneKey ? this.#done.get(doneKey) : undefined;
      if (marker && doneKey) {
        done++;
        if (!marker.failed) {
          let ms = this.#durations.get(doneKey);
          if (ms === undefined) {
            const attempts = await this.#attempts(entry.attempts, signal);
            const first = firstStart(attempts);
            if (first !== undefined) {
              ms = Math.max(0, marker.committedAt - first);
              this.#durations.set(doneKey, ms);
            }
          }
          if (ms !== undefined) completedShardMs.push(ms);
        }
        return;
      }
      const attempts = await this.#attempts(entry?.attempts ?? [], signal);
      let live = false;
      let interruptions = 0;
      for (const a of attempts) {
        if (a.cause === "running") {
          if (isGone(a.instanceId)) interruptions++;
          else {
            live = true;
            const act = activityOf(activity, a.instanceId);
            act.running++;
          }
        } else {
          // A lost attempt counts only when its instance is gone (a reclaim): one whose
          // instance lives on lost its worker process (a crash loop), which a straggler copy on
          // new on-demand capacity would only feed.
          if (
            a.cause === "interrupted" ||
            (a.cause === "lost" && a.error !== COMMITTED_ELSEWHERE && isGone(a.instanceId))
          )
            interruptions++;
        }
      }
      if (live) running.push({ shardId, startedAt: firstStart(attempts)!, interruptions });
    });

    // When each instance last ended an attempt (attempts of committed shards included).
    const prefix = keys.shardsPrefix(manifest.id);
    for (const [key, a] of this.#ended) {
      if (!key.startsWith(prefix) || !a.endedAt) continue;
      const act = activityOf(activity, a.instanceId);
      const ended = Date.parse(a.endedAt);
      if (act.lastEndedAt === undefined || ended > act.lastEndedAt) act.lastEndedAt = ended;
    }

    const counted = expected.length - done - running.length;
    // While splitting, more shards are coming: never report an empty backlog.
    const pendingShards = splitting ? Math.max(1 - running.length, counted, 0) : counted;
    running.sort((a, b) => (a.shardId < b.shardId ? -1 : 1));
    return {
      state: { id: manifest.id, pendingShards, running, completedShardMs },
      activity,
    };
  }

  /** The shard's attempts: ended ones from the cache, running ones read again. */
  async #attempts(attemptKeys: readonly string[], signal?: AbortSignal): Promise<Attempt[]> {
    const out: Attempt[] = [];
    for (const key of attemptKeys) {
      const cached = this.#ended.get(key);
      if (cached) {
        out.push(cached);
        continue;
      }
      // A record being rewritten or unreadable is skipped this pass, not fatal.
      const attempt = await this.#store.getJson(key, attemptSchema, signal).catch(() => undefined);
      if (!attempt) continue;
      if (attempt.cause !== "running") this.#ended.set(key, attempt);
      out.push(attempt);
    }
    return out;
  }

  /** Drops what is cached for an operation the fleet no longer watches. */
  forget(operationId: string): void {
    const prefix = keys.shardsPrefix(operationId);
    for (const cache of [this.#done, this.#ended, this.#durations]) {
      for (const key of cache.keys()) if (key.startsWith(prefix)) cache.delete(key);
    }
  }
}

function activityOf(map: Map<string, InstanceActivity>, instanceId: string): InstanceActivity {
  let act = map.get(instanceId);
  if (!act) {
    act = { running: 0 };
    map.set(instanceId, act);
  }
  return act;
}

function firstStart(attempts: readonly Attempt[]): number | undefined {
  let first: number | undefined;
  for (const a of attempts) {
    const t = Date.parse(a.startedAt);
    if (Number.isFinite(t) && (first === undefined || t < first)) first = t;
  }
  return first;
}
