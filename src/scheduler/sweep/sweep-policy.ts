/**
 * The self-healing sweep's decision, pure: which undone shards of a running operation have lost
 * their message and must be sent to the work queue again.
 *
 * Silence alone is not evidence: an operation with a long backlog has many shards whose
 * messages are merely waiting, and re-driving them would double that work. A message is known
 * lost only when
 *
 * - **the queue was created again** after the operation was submitted (a local stack restarted
 *   on kept S3 state, a queue deleted and recreated): every message sent before that is gone.
 *   A shard with no attempt started and no re-drive since the queue's creation has no message.
 * - **the queues are empty** (work and straggler: visible, in flight and delayed all 0), and have
 *   been at every look for longer than the silence window (the visibility timeout plus a
 *   margin; SQS's counts are approximate). A message being worked on is in flight, a released
 *   one is in flight or delayed, a worker deletes a message only after the shard's commit: so a
 *   shard with no commit and no sign of life (attempt started, refreshed or ended; re-drive)
 *   since the queues were first seen empty has no message anywhere.
 *
 * A re-drive is safe against the shard still running somewhere after all: the first commit wins
 * and a late copy finds the shard committed and stops.
 */
import type { Redrive } from "../../shared/schemas/shard.ts";

export type RedriveReason = Redrive["reason"];

/** What the work queue (and straggler queue) hold, seen at `observedAt`. */
export interface QueueObservation {
  /** When the work queue was created (ms). */
  createdAtMs: number;
  /**
   * Since when every look found the queues empty (ms), or undefined while they hold a message.
   * The sweep keeps it across passes: the first empty look after a non-empty one sets it.
   */
  emptySinceMs: number | undefined;
}

/** One shard of the operation, as its records in S3 show it. */
export interface ShardSigns {
  id: string;
  /** A done marker exists (committed, or committed failed). */
  done: boolean;
  /** The latest start of any of its attempts (ms). */
  lastAttemptStartMs?: number;
  /** Its latest sign of life: any attempt's start, refresh or end, or a re-drive (ms). */
  lastSignMs?: number;
  /** Its latest re-drive (ms). */
  lastRedriveMs?: number;
}

export interface SweptOperation {
  /** When the operation was submitted (ms): messages can only have been sent after it. */
  createdAtMs: number;
  /** When its split finished (ms), if known. */
  splitDoneMs?: number;
  shards: readonly ShardSigns[];
}

export interface SweepPolicyOptions {
  now: number;
  /** How long the queues must have looked empty before silence means lost (ms). */
  silenceMs: number;
}

export interface RedriveDecision {
  shardId: string;
  reason: RedriveReason;
}

/** Whether the queue was created after the operation: some of its messages may be gone. */
export function queueNewerThan(queue: QueueObservation, op: SweptOperation): boolean {
  return queue.createdAtMs > op.createdAtMs;
}

/** Whether the queues have looked empty for the whole silence window. */
export function emptyLongEnough(queue: QueueObservation, options: SweepPolicyOptions): boolean {
  return queue.emptySinceMs !== undefined && options.now - queue.emptySinceMs >= options.silenceMs;
}

/**
 * Whether the sweep needs to look at the operation's shards at all (cheap: no S3 read). False
 * for almost every pass of a healthy system.
 */
export function worthLooking(
  queue: QueueObservation,
  op: Pick<SweptOperation, "createdAtMs">,
  options: SweepPolicyOptions,
): boolean {
  return queueNewerThan(queue, { ...op, shards: [] }) || emptyLongEnough(queue, options);
}

/** The shards of `op` whose message is lost, each with the reason, in shard order. */
export function shardsToRedrive(
  queue: QueueObservation,
  op: SweptOperation,
  options: SweepPolicyOptions,
): RedriveDecision[] {
  const recreated = queueNewerThan(queue, op);
  const empty = emptyLongEnough(queue, options);
  const out: RedriveDecision[] = [];
  for (const shard of op.shards) {
    if (shard.done) continue;
    if (
      recreated &&
      !((shard.lastAttemptStartMs ?? -1) >= queue.createdAtMs) &&
      !((shard.lastRedriveMs ?? -1) >= queue.createdAtMs)
    ) {
      out.push({ shardId: shard.id, reason: "queue-recreated" });
      continue;
    }
    if (empty && queue.emptySinceMs !== undefined) {
      const lastSign = Math.max(shard.lastSignMs ?? -1, op.splitDoneMs ?? -1);
      if (lastSign < queue.emptySinceMs) out.push({ shardId: shard.id, reason: "queue-empty" });
    }
  }
  return out;
}

/**
 * The sweep's memory of empty looks: the first empty look after a non-empty one starts the
 * window, a look that finds a message ends it.
 */
export function nextEmptySince(
  previous: number | undefined,
  messages: number,
  observedAt: number,
): number | undefined {
  if (messages > 0) return undefined;
  return previous ?? observedAt;
}
