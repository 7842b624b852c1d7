/**
 * What handling one shard message comes to, as a value: the handler (ShardProcessor) returns
 * it, the consumer switches on it and makes the one SQS call it names. Exceptions are left for
 * the unexpected (the consumer releases those at once; see `outcomeOfError`).
 *
 *   delete       the shard is resolved: committed (by this attempt or anyone), or committed
 *                failed at the poison limit                          → DeleteMessage
 *   release      run it again later: an interrupted attempt (after its final checkpoint, at
 *                once), an error attempt below the poison limit (after its 2^n s backoff), a
 *                transient storage fault (after a short pause)      → ChangeMessageVisibility n
 *   dead-letter  a body that can never succeed                      → SendMessage to the DLQ,
 *                                                                     then DeleteMessage
 *   abandon      the message is someone else's now (its receipt handle went stale)
 *                                                                   → nothing
 */
import { describeError, ShardLostError } from "../shared/errors.ts";

/** What one attempt at a shard did (the `delete` outcome carries it when a shard ran). */
export interface ShardResult {
  operationId: string;
  shardId: string;
  /**
   * `committed`: this attempt's done.json won. `lost`: another worker committed first (this
   * attempt stopped at a checkpoint or lost the commit race). `already-done`: done.json existed
   * before we started. `failed`: the shard reached the poison limit and was committed failed.
   */
  status: "committed" | "lost" | "already-done" | "failed";
  rows: number;
  errorRows: number;
  /** Rows this attempt ran (fewer than `rows` after a resume). */
  rowsProcessed: number;
  /** The cursor this attempt resumed from, when it resumed from a checkpoint. */
  resumedFrom?: number;
  /** Checkpoints written, and their total and largest write time in ms. */
  checkpoints: number;
  checkpointMs: number;
  maxCheckpointMs: number;
}

export type MessageOutcome =
  | { kind: "delete"; result?: ShardResult }
  | {
      kind: "release";
      afterSeconds: number;
      /** `interrupted`: the worker was told to stop; `failed`: the attempt failed. */
      why: "interrupted" | "failed";
      reason: string;
      /** Error attempts of the shard so far (the poison count), for a failed attempt. */
      errorAttempts?: number;
      /** What failed the attempt, for the log line. */
      err?: unknown;
    }
  | { kind: "dead-letter"; reason: string; err?: unknown }
  | { kind: "abandon"; reason: string };

/** The outcome of a shard whose signal aborted: lost (abandon) or interrupted (release now). */
export function stoppedOutcome(signal: AbortSignal): MessageOutcome {
  const reason = describeError(signal.reason);
  return signal.reason instanceof ShardLostError
    ? { kind: "abandon", reason }
    : { kind: "release", afterSeconds: 0, why: "interrupted", reason };
}

/**
 * What the consumer does with a handler that threw (the unexpected): a shard it already knows
 * lost is left alone, one it stopped is released at once, anything else is released at once
 * too (retried here or elsewhere; after maxReceiveCount SQS dead-letters it itself).
 */
export function outcomeOfError(err: unknown, signal: AbortSignal): MessageOutcome {
  if (signal.aborted) return stoppedOutcome(signal);
  return { kind: "release", afterSeconds: 0, why: "failed", reason: describeError(err), err };
}
