/**
 * `GET /operations/:id/events`: the server-sent events of one operation. Each event's `data` is
 * one of these shapes (JSON), named by the SSE `event` field; the CLI's `watch` parses them with
 * the same schemas.
 */
import { z } from "zod";
import { costReportSchema } from "../schemas/cost.ts";
import { fleetEventSchema } from "../schemas/fleet.ts";
import { operationStatuses } from "../schemas/operation.ts";
import { operationViewSchema, shardCountsSchema, sourceViewSchema } from "./operations.ts";

/** `event: status`: the operation's shown status changed (or is told once on connecting). */
export const statusEventSchema = z.object({
  status: z.enum(operationStatuses),
  error: operationViewSchema.shape.error,
  waiting: operationViewSchema.shape.waiting,
  finishedAt: z.string().nullable(),
});
export type StatusEvent = z.infer<typeof statusEventSchema>;

/** `event: progress`: a snapshot of the row and shard counters (only when they changed). */
export const progressEventSchema = z.object({
  rows: operationViewSchema.shape.rows,
  shards: shardCountsSchema,
});
export type ProgressEvent = z.infer<typeof progressEventSchema>;

/** `event: fleet`: one fleet event; `seq` numbers it for good within the operation. */
export const fleetStreamEventSchema = fleetEventSchema.extend({
  seq: z.number().int().nonnegative(),
});
export type FleetStreamEvent = z.infer<typeof fleetStreamEventSchema>;

/** `event: cost`: the cost report's totals, once the operation has ended and it is written. */
export const costEventSchema = costReportSchema.pick({
  totalUsd: true,
  onDemandCounterfactualUsd: true,
  savingPercent: true,
  provisional: true,
});
export type CostEvent = z.infer<typeof costEventSchema>;

/**
 * `event: source`: what an http-enrich operation's source sees now, per origin (requests a second
 * against the budget, concurrency, 429s; the view's `source`), when it changed. State, not a log:
 * it carries no id, so a reconnecting client gets the current one and nothing older.
 */
export const sourceEventSchema = z.object({ origins: z.array(sourceViewSchema) });
export type SourceEvent = z.infer<typeof sourceEventSchema>;

export const streamEventNames = ["status", "progress", "fleet", "cost", "source"] as const;
export type StreamEventName = (typeof streamEventNames)[number];
