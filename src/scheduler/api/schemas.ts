/**
 * JSON schemas of the API's bodies and parameters. Response schemas double as documentation
 * and as fastify's serializer (fields not listed here are never sent).
 */
import { markets } from "../../shared/capacity.ts";
import { fleetEventKinds } from "../../shared/schemas/fleet.ts";
import { operationStatuses } from "../../shared/schemas/operation.ts";

const nullableString = { type: ["string", "null"] } as const;

export const operationParamsSchema = {
  type: "object",
  required: ["id"],
  properties: { id: { type: "string" } },
} as const;

export const listQuerySchema = {
  type: "object",
  properties: {
    /** Newest first, at most this many. */
    limit: { type: "integer", minimum: 1, maximum: 1000, default: 50 },
  },
  additionalProperties: false,
} as const;

export const acceptedSchema = {
  type: "object",
  required: ["id", "status"],
  properties: { id: { type: "string" }, status: { type: "string" } },
} as const;

export const operationViewSchema = {
  type: "object",
  required: [
    "id",
    "tenant",
    "name",
    "status",
    "task",
    "rows",
    "shards",
    "createdAt",
    "startedAt",
    "finishedAt",
  ],
  properties: {
    id: { type: "string" },
    tenant: { type: "string", description: "whose operation it is" },
    name: nullableString,
    status: { type: "string", enum: [...operationStatuses] },
    task: { type: "string" },
    rows: {
      type: "object",
      description:
        "total: known once split; done: rows in committed shards (failed ones too); failed: rows in error",
      required: ["total", "done", "failed"],
      properties: {
        total: { type: ["integer", "null"] },
        done: { type: "integer" },
        failed: { type: "integer" },
      },
    },
    shards: {
      type: "object",
      description: "disjoint counts that add up to total",
      required: ["total", "pending", "running", "done", "failed"],
      properties: {
        total: { type: "integer" },
        pending: { type: "integer" },
        running: { type: "integer" },
        done: { type: "integer" },
        failed: { type: "integer" },
      },
    },
    createdAt: { type: "string" },
    startedAt: nullableString,
    finishedAt: nullableString,
    error: {
      type: "object",
      required: ["code", "message"],
      properties: { code: { type: "string" }, message: { type: "string" } },
    },
    result: {
      type: "object",
      required: ["rows", "errorRows", "columns"],
      properties: {
        rows: { type: "integer" },
        errorRows: { type: "integer" },
        columns: { type: "array", items: { type: "string" } },
      },
    },
    waiting: {
      type: "object",
      description: "while waiting-for-capacity: since when and why",
      required: ["since", "reason"],
      properties: { since: { type: "string" }, reason: { type: "string" } },
    },
    instances: {
      type: "array",
      description:
        "instances launched for the operation (GET /operations/:id only); since: when it entered its state; interruptionWarnedAt / rebalanceRecommendedAt: when EventBridge said so",
      items: {
        type: "object",
        required: ["id", "market", "type", "role", "state", "since", "launchedAt"],
        properties: {
          id: { type: "string" },
          market: { type: "string", enum: [...markets] },
          type: { type: "string" },
          role: { type: "string", enum: ["worker", "straggler"] },
          state: { type: "string" },
          since: { type: "string" },
          launchedAt: { type: "string" },
          endReason: { type: "string" },
          interruptionWarnedAt: { type: "string" },
          rebalanceRecommendedAt: { type: "string" },
        },
      },
    },
    events: {
      type: "array",
      description:
        "fleet events, oldest first (GET /operations/:id only): launches, capacity errors, fallbacks, straggler copies, terminations",
      items: {
        type: "object",
        required: ["at", "kind", "message"],
        properties: {
          at: { type: "string" },
          kind: { type: "string", enum: [...fleetEventKinds] },
          message: { type: "string" },
        },
      },
    },
    source: {
      type: "array",
      description:
        "http-enrich with a rateLimit, while workers run it (GET /operations/:id only): per origin, the live workers, requests/s now against the budget (null without a rateLimit), the adaptive concurrency summed, and their requests, 429s and other failures",
      items: {
        type: "object",
        required: [
          "origin",
          "workers",
          "requestsPerSecond",
          "budget",
          "concurrency",
          "inFlight",
          "requests",
          "throttled",
          "failed",
        ],
        properties: {
          origin: { type: "string" },
          workers: { type: "integer" },
          requestsPerSecond: { type: "number" },
          budget: { type: ["number", "null"] },
          concurrency: { type: "integer" },
          inFlight: { type: "integer" },
          requests: { type: "integer" },
          throttled: { type: "integer" },
          failed: { type: "integer" },
        },
      },
    },
  },
} as const;

export const operationListSchema = {
  type: "object",
  required: ["operations"],
  properties: { operations: { type: "array", items: operationViewSchema } },
} as const;

/** `GET /operations/:id/cost`: the report as JSON, a CSV or xlsx download, or an SVG chart. */
export const costQuerySchema = {
  type: "object",
  properties: { format: { type: "string", enum: ["json", "csv", "xlsx", "svg"], default: "json" } },
  additionalProperties: false,
} as const;
