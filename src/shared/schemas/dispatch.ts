/**
 * The dispatch record (`keys.dispatch(op)`): how far the scheduler's fair-share dispatcher has
 * fed an operation's shards to the work queue. Shards go out in shard order, so one cursor says
 * it all: shards `[0, dispatched)` have been sent. Only src/scheduler/dispatch/dispatch-record.ts
 * writes it, always conditionally; the cursor never moves back.
 */
import { z } from "zod";

export const dispatchRecordSchema = z.strictObject({
  v: z.literal(1),
  operationId: z.string().min(1),
  /** Shards sent to the work queue, as a prefix of the operation's shards in order. */
  dispatched: z.number().int().nonnegative(),
  updatedAt: z.iso.datetime(),
});
export type DispatchRecord = z.infer<typeof dispatchRecordSchema>;
