/**
 * The done marker (`done.json`), a shard's commit: the only code that builds and writes its
 * body. Two writers commit through it: a worker's attempt (its chunks, or a poison shard given
 * up on) and the scheduler's dead-letter path. Every write is a conditional put
 * (`If-None-Match: *`): the first commit wins, a later one learns it lost and changes nothing.
 */
import type { Clock } from "../clock.ts";
import { keys } from "../keys.ts";
import type { ObjectStore } from "../object-store.ts";
import {
  type ChunkRef,
  type SegmentRef,
  type ShardDone,
  shardDoneSchema,
} from "../schemas/shard.ts";

export interface DoneMarkerDeps {
  store: ObjectStore;
  clock: Clock;
}

/** Who commits: the attempt (or, for the dead-letter path, a stand-in id) and its instance. */
export interface Committer {
  operationId: string;
  shardId: string;
  attemptId: string;
  instanceId: string;
}

/** What a worker's commit carries: the result chunks, or (poison) only the failure. */
export interface ShardResultSummary {
  rows: number;
  errorRows: number;
  columns: string[];
  chunks: ChunkRef[];
  /** The chunks' rendered output rows (src/worker/output-segments.ts). */
  segments?: SegmentRef[];
  /** Set when the shard was given up on: every row carries this error. */
  failed?: string;
}

/** Why a dead-lettered shard failed (not the receive count: SQS carries it into the DLQ). */
export const DEAD_LETTERED =
  "shard was delivered too many times without finishing (maxReceiveCount) and was moved to the dead-letter queue";

/** The marker's body. */
export function doneMarker(by: Committer, result: ShardResultSummary, now: number): ShardDone {
  return {
    v: 1,
    operationId: by.operationId,
    shardId: by.shardId,
    attemptId: by.attemptId,
    instanceId: by.instanceId,
    rows: result.rows,
    errorRows: result.errorRows,
    columns: result.columns,
    chunks: result.chunks,
    ...(result.segments === undefined ? {} : { segments: result.segments }),
    ...(result.failed === undefined ? {} : { failed: result.failed }),
    committedAt: new Date(now).toISOString(),
  };
}

/** Commits the shard for `by`. Resolves whether this commit won (false: committed already). */
export function commitDone(
  deps: DoneMarkerDeps,
  by: Committer,
  result: ShardResultSummary,
  signal: AbortSignal,
): Promise<boolean> {
  return deps.store.putJsonIfAbsent(
    keys.done(by.operationId, by.shardId),
    shardDoneSchema,
    doneMarker(by, result, deps.clock.now()),
    signal,
  );
}

/** Every row of a shard `[start, end)` failed with `failed`, no chunks. */
export function failedResult(shard: { start: number; end: number }, failed: string) {
  const rows = shard.end - shard.start;
  return { rows, errorRows: rows, columns: [], chunks: [], failed } satisfies ShardResultSummary;
}

/**
 * The dead-letter path (the scheduler): commits a shard SQS gave up on as failed, under the
 * stand-in attempt `dlq-{messageId}`. A late worker success is never overwritten; a late
 * worker commit simply loses.
 */
export function commitDeadLettered(
  deps: DoneMarkerDeps,
  shard: { operationId: string; shardId: string; start: number; end: number },
  messageId: string,
  signal: AbortSignal,
): Promise<boolean> {
  return commitDone(
    deps,
    {
      operationId: shard.operationId,
      shardId: shard.shardId,
      attemptId: `dlq-${messageId}`,
      instanceId: "scheduler",
    },
    failedResult(shard, DEAD_LETTERED),
    signal,
  );
}

/** Whether the shard is committed (by anyone). */
export function isCommitted(
  store: ObjectStore,
  shard: { operationId: string; shardId: string },
  signal?: AbortSignal,
): Promise<boolean> {
  return store.exists(keys.done(shard.operationId, shard.shardId), signal);
}
