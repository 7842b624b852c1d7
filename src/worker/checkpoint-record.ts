/**
 * The checkpoint record (`keys.checkpoint`), its I/O: the only code that builds, writes and
 * reads a checkpoint's body. What goes into it (the scheme, and why it is sound) is
 * ./checkpoint.ts's; when one is written is ./shard-run.ts's. An unreadable checkpoint is only
 * ignored: the shard starts over.
 */
import type { Clock } from "../shared/clock.ts";
import { keys } from "../shared/keys.ts";
import type { Logger } from "../shared/logger.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import { type Checkpoint, checkpointSchema, type ShardMessage } from "../shared/schemas/shard.ts";
import type { ShardProgress } from "./checkpoint.ts";

/** The checkpoint body of `progress`, written by attempt `attemptId`. */
export function checkpointRecord(
  shard: Pick<ShardMessage, "operationId" | "shardId">,
  attemptId: string,
  progress: ShardProgress,
  now: number,
): Checkpoint {
  return {
    v: 1,
    operationId: shard.operationId,
    shardId: shard.shardId,
    attemptId,
    cursor: progress.cursor,
    chunks: progress.chunks,
    ...(progress.segments ? { segments: progress.segments } : {}),
    columns: progress.columns,
    errorRows: progress.errorRows,
    updatedAt: new Date(now).toISOString(),
  };
}

/** Writes the shard's checkpoint: `progress` is durable once this resolves. */
export function writeCheckpoint(
  deps: { store: ObjectStore; clock: Clock },
  shard: Pick<ShardMessage, "operationId" | "shardId">,
  attemptId: string,
  progress: ShardProgress,
  signal: AbortSignal,
): Promise<void> {
  return deps.store.putJson(
    keys.checkpoint(shard.operationId, shard.shardId),
    checkpointSchema,
    checkpointRecord(shard, attemptId, progress, deps.clock.now()),
    signal,
  );
}

/** The shard's checkpoint, or undefined (none, or unreadable: then the shard starts over). */
export async function loadCheckpoint(
  store: ObjectStore,
  shard: Pick<ShardMessage, "operationId" | "shardId">,
  signal: AbortSignal,
  logger: Logger,
): Promise<Checkpoint | undefined> {
  try {
    return await store.getJson(
      keys.checkpoint(shard.operationId, shard.shardId),
      checkpointSchema,
      signal,
    );
  } catch (err) {
    if (signal.aborted) throw err;
    if (err instanceof SyntaxError || (err as { name?: unknown }).name === "ZodError") {
      logger.warn({ err }, "ignoring an unreadable checkpoint");
      return undefined;
    }
    throw err;
  }
}
