/**
 * The one function through which the scheduler's sweep puts shard messages on the work queue
 * (./sweep/sweep.ts). Kept apart so that how shards are enqueued (one FIFO queue today; a queue
 * per priority or tenant tomorrow) changes in one place.
 */
import type { ShardMessage } from "../shared/schemas/shard.ts";
import type { ShardQueue } from "../shared/shard-queue.ts";

export interface EnqueueTarget {
  queue: ShardQueue;
  workQueueUrl: string;
}

/** Sends one message per shard to the work queue (10 a call). */
export function enqueueShards(
  target: EnqueueTarget,
  shards: readonly ShardMessage[],
  signal?: AbortSignal,
): Promise<void> {
  return target.queue.sendShards(target.workQueueUrl, [...shards], signal);
}
