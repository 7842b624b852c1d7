/**
 * The one function through which the scheduler puts shard messages on the work queue: the
 * dispatcher's first sends and its re-sends (./dispatch/dispatcher.ts), which the sweep
 * (./sweep/sweep.ts), the retry planner (./retry/retry-planner.ts) and the dead-letter re-drive
 * reach through `Scheduler.enqueueShards`. Kept apart so that how shards are enqueued (one FIFO
 * queue today; a queue per priority or tenant tomorrow) changes in one place. Every body is
 * parsed first: a message no worker could read never leaves the scheduler.
 */
import { type ShardMessage, shardMessageSchema } from "../shared/schemas/shard.ts";
import type { ShardQueue } from "../shared/shard-queue.ts";

export interface EnqueueTarget {
  queue: Pick<ShardQueue, "sendShards">;
  workQueueUrl: string;
}

/** What sends shards again that were dispatched once (the scheduler, through its dispatcher). */
export interface ShardEnqueuer {
  enqueueShards(messages: readonly ShardMessage[], signal?: AbortSignal): Promise<void>;
}

/** Sends one message per shard to the work queue (10 a call), each body parsed first. */
export function enqueueShards(
  target: EnqueueTarget,
  shards: readonly ShardMessage[],
  signal?: AbortSignal,
): Promise<void> {
  const bodies = shards.map((s) => shardMessageSchema.parse(s));
  return target.queue.sendShards(target.workQueueUrl, bodies, signal);
}
