/**
 * What travels about a shard: the queue message, the checkpoint, the attempt record and the
 * commit marker (`done.json`). Each has a version field and is parsed at every boundary.
 */
import { z } from "zod";

const timestamp = z.iso.datetime();

/** One SQS message per shard. Small on purpose: the rows live in S3. */
export const shardMessageSchema = z.strictObject({
  v: z.literal(1),
  operationId: z.string().min(1),
  shardId: z.string().min(1),
  start: z.number().int().nonnegative(),
  end: z.number().int().nonnegative(),
  /**
   * Set on a shard of a retry (`POST /operations/:id/retry`): its number. The shard id is then
   * the retry's own (`retryShardIdFor`) and its slice holds only the failed rows it runs again;
   * the worker runs it with the task options of that retry.
   */
  retry: z.number().int().min(1).optional(),
});
export type ShardMessage = z.infer<typeof shardMessageSchema>;

/**
 * A chunk's rows rendered as output sheet XML by the worker (src/shared/sheet/): a raw-deflate
 * segment the merger stitches into the workbook without inflating it, for the rows `[start,
 * end)`. Its key names the attempt, so a racing attempt never overwrites the bytes this record
 * describes.
 */
export const segmentRefSchema = z.object({
  key: z.string(),
  start: z.number().int().nonnegative(),
  end: z.number().int().nonnegative(),
  /** Rows in the segment, one per input row of the chunk's range. */
  rows: z.number().int().nonnegative(),
  /** Rows whose error cell is set. */
  errorRows: z.number().int().nonnegative(),
  /** The result columns it was rendered with, in order (the merger uses it only if they are
   * the operation's). */
  columns: z.array(z.string()),
  /** CRC-32 and length of the uncompressed XML; length of the compressed bytes. */
  crc: z.number().int().min(0).max(0xffffffff),
  size: z.number().int().nonnegative(),
  compressedSize: z.number().int().nonnegative(),
});
export type SegmentRef = z.infer<typeof segmentRefSchema>;

export const chunkRefSchema = z.object({
  key: z.string(),
  start: z.number().int().nonnegative(),
  end: z.number().int().nonnegative(),
});
export type ChunkRef = z.infer<typeof chunkRefSchema>;

/** Durable progress of a shard: rows before `cursor` are in `chunks`. */
export const checkpointSchema = z.object({
  v: z.literal(1),
  operationId: z.string(),
  shardId: z.string(),
  attemptId: z.string(),
  cursor: z.number().int().nonnegative(),
  chunks: z.array(chunkRefSchema),
  /** The chunks' rendered output rows, in row order (absent or partial: the merger renders). */
  segments: z.array(segmentRefSchema).optional(),
  columns: z.array(z.string()),
  errorRows: z.number().int().nonnegative(),
  updatedAt: timestamp,
});
export type Checkpoint = z.infer<typeof checkpointSchema>;

export const attemptCauses = ["running", "completed", "interrupted", "lost", "error"] as const;

/**
 * How the error of an attempt relabelled `lost` by another worker starts (its own worker died
 * without a word): `relabelled by <instance>: <why>`. Written by the worker's attempt records,
 * read by the cost report (such an attempt's last rows are unknown).
 */
export const RELABELLED_BY = "relabelled by";

/** One worker's try at a shard. */
export const attemptSchema = z.object({
  v: z.literal(1),
  attemptId: z.string(),
  operationId: z.string(),
  shardId: z.string(),
  instanceId: z.string(),
  market: z.enum(["spot", "on-demand"]),
  startedAt: timestamp,
  endedAt: timestamp.optional(),
  /** Last sign of life of a running attempt (refreshed at its checkpoints). */
  updatedAt: timestamp.optional(),
  /** The SQS message it ran under: a redelivery of that message proves this attempt is gone. */
  messageId: z.string().optional(),
  rowsDone: z.number().int().nonnegative(),
  /**
   * The cursor it resumed from (the shard's start when it started afresh), recorded once its
   * checkpoint is read: with the next attempt's, it shows what this one left checkpointed even
   * when it died before its record said so (wasted work). Absent in older records.
   */
  startCursor: z.number().int().nonnegative().optional(),
  cause: z.enum(attemptCauses),
  error: z.string().optional(),
});
export type Attempt = z.infer<typeof attemptSchema>;

/** The commit marker: the first finisher's conditional write wins. */
export const shardDoneSchema = z.object({
  v: z.literal(1),
  operationId: z.string(),
  shardId: z.string(),
  attemptId: z.string(),
  instanceId: z.string(),
  rows: z.number().int().nonnegative(),
  errorRows: z.number().int().nonnegative(),
  /** Result columns this shard produced, in first-seen order. */
  columns: z.array(z.string()),
  chunks: z.array(chunkRefSchema),
  /** The chunks' rendered output rows, in row order (absent or partial: the merger renders). */
  segments: z.array(segmentRefSchema).optional(),
  /** Set when the shard was given up on (poison): its rows carry this error. */
  failed: z.string().optional(),
  committedAt: timestamp,
});
export type ShardDone = z.infer<typeof shardDoneSchema>;

/** Why the sweep re-drove a shard (src/scheduler/sweep/sweep-policy.ts). */
export const redriveReasons = ["queue-recreated", "queue-empty"] as const;

/** One re-drive of a shard by the scheduler's sweep (`keys.redrive`). */
export const redriveSchema = z.object({
  v: z.literal(1),
  operationId: z.string(),
  shardId: z.string(),
  at: timestamp,
  reason: z.enum(redriveReasons),
});
export type Redrive = z.infer<typeof redriveSchema>;
