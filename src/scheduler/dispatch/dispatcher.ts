/**
 * The dispatcher: the one way shard messages reach the work queue. SQS has no priorities, so
 * instead of the splitter queueing every shard at once (a small operation would wait behind a
 * million rows), the scheduler keeps the queue's backlog small and, at every pass, fills it in a
 * fair order (./fair-order.ts: between tenants, then operations by priority).
 *
 * What it knows per pass, from S3 alone (one LIST of each operation's shard records):
 *   dispatched  the dispatch record's cursor (./dispatch-record.ts): shards [0, n) were sent
 *   started     shards with an attempt or a commit marker (a worker received them)
 *   done        shards with a commit marker
 * queued = dispatched − started (waiting in SQS), inflight = dispatched − done (its load).
 * A shard released for a retry counts as started, not queued: the bound is a soft one.
 *
 * Available shards: the manifest's once split; while the split runs, what the splitter has
 * handed over so far (`splitterQueue`), in shard order. Nothing is dispatched for an operation
 * that is paused, cancelling or not live: only `splitting` and `running` ones take part.
 *
 * Crash safety: messages go out first, the cursor is advanced after (per batch of 10). A crash
 * or a lost lease in between re-sends at most those shards, which workers take as duplicates
 * (the first commit wins; a committed shard's message is deleted), never loses one.
 */
import { mapLimit } from "../../shared/async.ts";
import { type Clock, systemClock } from "../../shared/clock.ts";
import { keys, parseShardKey } from "../../shared/keys.ts";
import type { Logger } from "../../shared/logger.ts";
import type { ObjectStore } from "../../shared/object-store.ts";
import { type Manifest, tenantOf } from "../../shared/schemas/operation.ts";
import type { ShardMessage } from "../../shared/schemas/shard.ts";
import { type ShardQueue, SQS_BATCH_MAX } from "../../shared/shard-queue.ts";
import { enqueueShards } from "../shard-enqueue.ts";
import type { DispatchRecords } from "./dispatch-record.ts";
import {
  type BacklogBound,
  DrainMeter,
  dispatchRoom,
  type FairCandidate,
  fairOrder,
} from "./fair-order.ts";

/**
 * The backlog when nothing else is set: one SendMessageBatch, or what workers take in a second
 * (two passes: a pass late by one still finds shards queued) when that is more.
 */
export const DEFAULT_BACKLOG_BOUND: BacklogBound = {
  minQueued: 10,
  queuedPerRunning: 1,
  drainSeconds: 1,
};

/** The statuses whose shards are dispatched. */
const DISPATCHED_STATUSES: ReadonlySet<string> = new Set(["splitting", "running"]);

/** An operation's effective priority: its PATCHed cap, else its spec's, else 0. */
export function priorityOf(manifest: Pick<Manifest, "caps" | "spec">): number {
  return manifest.caps?.priority ?? manifest.spec.priority ?? 0;
}

export interface DispatcherDeps {
  store: ObjectStore;
  queue: Pick<ShardQueue, "sendShards">;
  records: DispatchRecords;
  logger: Logger;
  /** Times the drain rate. @default systemClock */
  clock?: Clock;
}

export interface DispatcherOptions {
  workQueueUrl: string;
  /** @default DEFAULT_BACKLOG_BOUND */
  bound?: BacklogBound;
}

/** What one pass did, for logs and tests. */
export interface DispatchPass {
  room: number;
  queued: number;
  running: number;
  /** Shards workers started since the previous pass (logged: how fast the backlog drains). */
  drained: number;
  /** Shards workers started per second lately (./fair-order.ts `drainRate`). */
  drainPerSecond: number;
  /** Shards sent, by operation. */
  sent: Record<string, number>;
}

interface Observed {
  manifest: Manifest;
  available: readonly ShardMessage[];
  dispatched: number;
  started: number;
  done: number;
}

export class Dispatcher {
  readonly #store: ObjectStore;
  readonly #queue: Pick<ShardQueue, "sendShards">;
  readonly #records: DispatchRecords;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #workQueueUrl: string;
  readonly #bound: BacklogBound;
  /** Shards the running splits have handed over, by operation, in shard order. */
  readonly #announced = new Map<string, { list: ShardMessage[]; index: Map<string, number> }>();
  /** Shards started per operation at the last pass: what workers drained since is the difference. */
  readonly #startedBefore = new Map<string, number>();
  /** When each operation was last given a slot (`#serial`): the policy's tie-break. */
  readonly #servedAt = new Map<string, number>();
  #serial = 0;
  /** What workers start per second, from the passes' drained counts. */
  readonly #drain = new DrainMeter();

  constructor(deps: DispatcherDeps, options: DispatcherOptions) {
    this.#store = deps.store;
    this.#queue = deps.queue;
    this.#records = deps.records;
    this.#logger = deps.logger;
    this.#clock = deps.clock ?? systemClock;
    this.#workQueueUrl = options.workQueueUrl;
    this.#bound = options.bound ?? DEFAULT_BACKLOG_BOUND;
  }

  /**
   * What a split queues through instead of the work queue: its shards become available to the
   * dispatcher as their slices land. Creates the operation's dispatch record first.
   * @param onFirst called when the first shards of this split arrive (wake the scheduler).
   */
  async splitterQueue(
    operationId: string,
    onFirst: () => void,
    signal?: AbortSignal,
  ): Promise<Pick<ShardQueue, "sendShards">> {
    await this.#records.create(operationId, signal);
    let first = true;
    return {
      sendShards: async (_queueUrl, shards) => {
        this.#announce(operationId, shards);
        if (first && shards.length > 0) {
          first = false;
          onFirst();
        }
      },
    };
  }

  /**
   * Puts shard messages on the work queue as they are, bodies unchanged: the path for shards
   * that were dispatched once and must run again (a dead-lettered shard of a paused operation,
   * a re-driven lost shard, a retry). Not held back by the fair order: they were admitted once.
   */
  async enqueueShards(messages: readonly ShardMessage[], signal?: AbortSignal): Promise<void> {
    await enqueueShards(this.#target, messages, signal);
  }

  /** How many of the operation's shards were sent (`[0, n)`); undefined without a record. */
  dispatched(operationId: string, signal?: AbortSignal): Promise<number | undefined> {
    return this.#records.dispatched(operationId, signal);
  }

  get #target() {
    return { queue: this.#queue, workQueueUrl: this.#workQueueUrl };
  }

  /** Forgets an operation that ended (its split's hand-over, its cached record). */
  forget(operationId: string): void {
    this.#announced.delete(operationId);
    this.#servedAt.delete(operationId);
    this.#startedBefore.delete(operationId);
    this.#records.forget(operationId);
  }

  /**
   * One pass: observes every live operation given, computes the room in the backlog and the
   * fair order, sends, advances the cursors. Operations not splitting or running only count for
   * nothing (a paused one's messages are released by workers, not worked on).
   */
  async pass(manifests: readonly Manifest[], signal?: AbortSignal): Promise<DispatchPass> {
    const live = manifests.filter((m) => DISPATCHED_STATUSES.has(m.status));
    for (const m of manifests) {
      if (m.shards !== undefined) this.#announced.delete(m.id);
    }
    const observed = (await mapLimit(live, 8, (m) => this.#observe(m, signal))).filter(
      (o): o is Observed => o !== undefined,
    );
    let queued = 0;
    let running = 0;
    let drained = 0;
    const candidates: FairCandidate[] = [];
    for (const o of observed) {
      queued += Math.max(0, o.dispatched - o.started);
      running += Math.max(0, o.started - o.done);
      const before = this.#startedBefore.get(o.manifest.id);
      if (before !== undefined) drained += Math.max(0, o.started - before);
      this.#startedBefore.set(o.manifest.id, o.started);
      candidates.push({
        id: o.manifest.id,
        tenant: tenantOf(o.manifest),
        priority: priorityOf(o.manifest),
        ready: Math.max(0, o.available.length - o.dispatched),
        inflight: Math.max(0, o.dispatched - o.done),
        createdAt: o.manifest.createdAt,
        ...(this.#servedAt.has(o.manifest.id)
          ? { servedAt: this.#servedAt.get(o.manifest.id) }
          : {}),
      });
    }
    const drainPerSecond = this.#drain.note(this.#clock.now(), drained);
    const room = dispatchRoom({ queued, running, drainPerSecond }, this.#bound);
    const plan = fairOrder(candidates, room);
    for (const id of plan) this.#servedAt.set(id, ++this.#serial);
    const sent: Record<string, number> = {};
    if (plan.length === 0) return { room, queued, running, drained, drainPerSecond, sent };

    const byId = new Map(observed.map((o) => [o.manifest.id, o]));
    const next = new Map<string, number>();
    const messages: ShardMessage[] = [];
    for (const id of plan) {
      const o = byId.get(id)!;
      const k = next.get(id) ?? o.dispatched;
      next.set(id, k + 1);
      messages.push(o.available[k]!);
    }
    const sentUpTo = new Map<string, number>();
    try {
      for (let i = 0; i < messages.length; i += SQS_BATCH_MAX) {
        const batch = messages.slice(i, i + SQS_BATCH_MAX);
        await enqueueShards(this.#target, batch, signal);
        for (const m of batch) {
          const k = (sentUpTo.get(m.operationId) ?? byId.get(m.operationId)!.dispatched) + 1;
          sentUpTo.set(m.operationId, k);
          sent[m.operationId] = (sent[m.operationId] ?? 0) + 1;
        }
      }
    } finally {
      // What went out is recorded even when a later batch failed: only that much may repeat.
      await mapLimit([...sentUpTo], 8, ([id, to]) => this.#records.advance(id, to, signal));
    }
    this.#logger.debug(
      { room, queued, running, drained, drainPerSecond, sent },
      "shards dispatched",
    );
    return { room, queued, running, drained, drainPerSecond, sent };
  }

  #announce(operationId: string, shards: readonly ShardMessage[]): void {
    let entry = this.#announced.get(operationId);
    if (!entry) {
      entry = { list: [], index: new Map() };
      this.#announced.set(operationId, entry);
    }
    for (const shard of shards) {
      // A split run again hands the same shards over again: same place, same body.
      const at = entry.index.get(shard.shardId);
      if (at !== undefined) entry.list[at] = shard;
      else {
        entry.index.set(shard.shardId, entry.list.length);
        entry.list.push(shard);
      }
    }
  }

  async #observe(manifest: Manifest, signal?: AbortSignal): Promise<Observed | undefined> {
    const op = manifest.id;
    let dispatched = await this.#records.dispatched(op, signal);
    const available: readonly ShardMessage[] = manifest.shards
      ? manifest.shards.map((s) => ({
          v: 1 as const,
          operationId: op,
          shardId: s.id,
          start: s.start,
          end: s.end,
        }))
      : (this.#announced.get(op)?.list ?? []);
    if (dispatched === undefined) {
      if (manifest.shards === undefined) return undefined; // its split has not created it yet
      // Split by a release before dispatch records: its split queued every shard itself.
      dispatched = await this.#records.advance(op, manifest.shards.length, signal);
      this.#logger.info(
        { operationId: op, shards: manifest.shards.length },
        "operation queued before dispatch records: every shard counted as dispatched",
      );
    }
    const started = new Set<string>();
    let done = 0;
    for (const key of await this.#store.list(keys.shardsPrefix(op), signal)) {
      const parsed = parseShardKey(key);
      if (!parsed || parsed.scratch) continue;
      if (parsed.rest === "done.json") {
        done++;
        started.add(parsed.shardId);
      } else if (parsed.rest.startsWith("attempts/")) started.add(parsed.shardId);
    }
    return {
      manifest,
      available,
      dispatched,
      started: started.size,
      done,
    };
  }
}
