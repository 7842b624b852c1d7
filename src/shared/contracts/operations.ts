/**
 * The operation as the API shows it: one declaration, from which the scheduler's view type, the
 * routes' JSON schemas and the CLI client's parsing all come.
 */
import { z } from "zod";
import { fleetEventSchema, fleetInstanceRecordSchema } from "../schemas/fleet.ts";
import { operationCapsSchema, operationStatuses } from "../schemas/operation.ts";

const count = z.number().int().nonnegative();

/** Disjoint shard counts that add up to `total`. */
export const shardCountsSchema = z
  .object({ total: count, pending: count, running: count, done: count, failed: count })
  .describe("disjoint counts that add up to total");
export type ShardCounts = z.infer<typeof shardCountsSchema>;

/**
 * An instance launched for the operation, as its fleet record holds it (`since`: when it entered
 * `state`) without the AZ.
 */
export const operationInstanceViewSchema = fleetInstanceRecordSchema.omit({
  availabilityZone: true,
});
export type OperationInstanceView = z.infer<typeof operationInstanceViewSchema>;

/** One origin of an http-enrich operation (with or without a rateLimit), as its live workers report it. */
export const sourceViewSchema = z.object({
  origin: z.string(),
  workers: count.describe("workers sending to it now"),
  requestsPerSecond: z.number().nonnegative().describe("requests a second the fleet sends now"),
  budget: z.number().nonnegative().nullable().describe("its budget (null without a rateLimit)"),
  concurrency: count.describe("requests the workers allow in flight now, summed"),
  inFlight: count,
  requests: count.describe("requests since each live worker loaded the operation"),
  throttled: count.describe("429 answers among them"),
  failed: count.describe("other failures among them"),
  // Optional: a client still reads an older scheduler.
  latencyMs: z
    .number()
    .nonnegative()
    .nullable()
    .describe("mean latency of the workers' recent answers, ms (null before the first)")
    .optional(),
  instances: count
    .nullable()
    .describe(
      "instances the budget keeps busy at the measured concurrency ÷ latency (the fleet launches no more; null without a budget or a measurement)",
    )
    .optional(),
});
export type SourceView = z.infer<typeof sourceViewSchema>;

/** One retry of an operation's failed rows (`POST /operations/:id/retry`), oldest first. */
export const retryViewSchema = z.object({
  number: z.number().int().min(1).describe("1 for the first retry"),
  requestedAt: z.string(),
  options: z
    .record(z.string(), z.unknown())
    .describe("the task options it ran with (the operation's, changed by the request)"),
  rows: count.nullable().describe("rows it runs again (null until the scheduler planned it)"),
  shards: count.nullable().describe("shards it runs (null until planned)"),
  endedAt: z.string().nullable(),
  status: z.enum(operationStatuses).nullable().describe("the status the operation ended in"),
  errorRows: count.nullable().describe("error rows in the output after it"),
});
export type RetryView = z.infer<typeof retryViewSchema>;

/**
 * `POST /operations/:id/retry` (optional body): task options to change for the retry, checked
 * with the task's own strict schema as at submission; a key set to null goes back to its default.
 */
export const retryRequestSchema = z.strictObject({
  options: z
    .record(z.string(), z.unknown())
    .describe("task options to change (null removes one: its default applies)")
    .optional(),
});
export type RetryRequest = z.infer<typeof retryRequestSchema>;

/** `GET /operations/:id` (and each item of `GET /operations`). */
export const operationViewSchema = z.object({
  id: z.string(),
  tenant: z.string().describe("whose operation it is"),
  name: z.string().nullable(),
  status: z.enum(operationStatuses),
  task: z.string(),
  rows: z
    .object({ total: count.nullable(), done: count, failed: count })
    .describe(
      "total: known once split; done: rows in committed shards (failed ones too); failed: rows in error",
    ),
  shards: shardCountsSchema,
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
  result: z.object({ rows: count, errorRows: count, columns: z.array(z.string()) }).optional(),
  priority: z
    .number()
    .int()
    .describe(
      "fair-share priority in force (−100…100, higher first): PATCHed caps.priority, else the spec's, else 0",
    )
    // Always sent since fair share; optional so a client still reads an older scheduler.
    .optional(),
  caps: operationCapsSchema
    .describe("the operation's own caps, as last changed by PATCH /operations/:id")
    .optional(),
  retries: z
    .array(retryViewSchema)
    .describe("retries of its failed rows, oldest first (POST /operations/:id/retry)")
    .optional(),
  waiting: z
    .object({ since: z.string(), reason: z.string() })
    .describe("while waiting for capacity: since when and why")
    .optional(),
  instances: z
    .array(operationInstanceViewSchema)
    .describe(
      "instances launched for the operation (GET /operations/:id only); since: when it entered its state; interruptionWarnedAt / rebalanceRecommendedAt: when EventBridge said so",
    )
    .optional(),
  events: z
    .array(fleetEventSchema)
    .describe(
      "fleet events, oldest first (GET /operations/:id only): launches, capacity errors, fallbacks, straggler copies, terminations",
    )
    .optional(),
  source: z
    .array(sourceViewSchema)
    .describe(
      "http-enrich while workers run it: what its source sees, per origin, against the rateLimit when there is one (GET /operations/:id only)",
    )
    .optional(),
});
export type OperationView = z.infer<typeof operationViewSchema>;

/** `GET /operations`: newest first. */
export const operationListSchema = z.object({
  operations: z.array(operationViewSchema),
  nextCursor: z
    .string()
    .describe("present when more operations may follow: pass it as ?cursor= for the next page")
    .optional(),
});
export type OperationList = z.infer<typeof operationListSchema>;

/** `POST /operations` (202): the new operation's id and first status. */
export const acceptedSchema = z.object({ id: z.string(), status: z.enum(operationStatuses) });
export type Accepted = z.infer<typeof acceptedSchema>;

/**
 * `PATCH /operations/:id`: the caps to change (at least one). A field left out keeps its value.
 */
export const capsPatchSchema = operationCapsSchema.refine((p) => Object.keys(p).length > 0, {
  message: "name at least one of maxInstances, maxHourlyUsd, concurrency, priority",
});
export type CapsPatch = z.infer<typeof capsPatchSchema>;
/** Most operations one `GET /operations` page holds. */
export const MAX_LIST_LIMIT = 1000;

/**
 * `GET /operations` query: strict (an unknown parameter is a 400 naming it, not ignored).
 * `cursor` is the opaque `nextCursor` of the previous page.
 */
export const operationListQuerySchema = z.strictObject({
  status: z.enum(operationStatuses).describe("only operations showing this status").optional(),
  limit: z.coerce
    .number()
    .int()
    .min(1)
    .max(MAX_LIST_LIMIT)
    .describe("newest first, at most this many")
    .default(50),
  cursor: z.string().min(1).max(512).describe("nextCursor of the previous page").optional(),
});
export type OperationListQuery = z.infer<typeof operationListQuerySchema>;
