/**
 * Task option schemas. They live in shared because the API validates a spec before anything is
 * persisted and the worker validates it again before running it. Implementations live in
 * `src/worker/tasks/`.
 */
import { z } from "zod";

/**
 * Most requests one worker keeps in flight for one operation: enough for a slow source, not
 * enough to make a fleet of workers a flood tool against it.
 */
export const MAX_HTTP_CONCURRENCY = 200;

/** An HTTP header name (an HTTP token). */
const headerName = z
  .string()
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, "a header name (an HTTP token)");

/** The header an idempotency key goes in when the options name none. */
export const DEFAULT_IDEMPOTENCY_HEADER = "Idempotency-Key";

/**
 * An operation-wide request budget for one origin: the fleet's workers divide it among
 * themselves (see `src/worker/budget/`), so the source sees at most this rate, whatever the
 * fleet's size.
 */
export const rateLimitSchema = z.strictObject({
  /** Requests a second the whole fleet may send to one origin. */
  requestsPerSecond: z.number().positive().max(1_000_000),
  /**
   * Requests the fleet may send at once above the rate after a quiet spell.
   * @default a quarter of a second's worth (at least 1)
   */
  burst: z.number().int().min(1).max(1_000_000).optional(),
});
export type RateLimit = z.infer<typeof rateLimitSchema>;

/** The burst a rate limit allows: its own, or a quarter second's worth. */
export function burstOf(limit: RateLimit): number {
  return limit.burst ?? Math.max(1, Math.floor(limit.requestsPerSecond / 4));
}

// Strict objects: an unknown key (`"timout": 5`) is refused, never ignored.
const httpEnrichFields = z.strictObject({
  /** URL with `{column}` placeholders, filled with URL-encoded cell values. */
  url: z.string().min(1),
  method: z.enum(["GET", "POST", "PUT", "PATCH", "DELETE"]).default("GET"),
  /** Sent as given; names are HTTP tokens and values single lines (checked at intake, not per row). */
  headers: z
    .record(headerName, z.string().regex(/^[^\r\n\0]*$/, "a header value on one line"))
    .default({}),
  /** Optional body with `{column}` placeholders; values are JSON-escaped when a `content-type` header says json. */
  body: z.string().optional(),
  /** Result column → dotted path into the JSON response (e.g. `"taxDue": "tax.due"`). */
  results: z.record(z.string().min(1), z.string().min(1)),
  /**
   * Most requests in flight per worker. With adaptive concurrency, the ceiling of what the
   * worker finds the source accepts. @default 150
   */
  concurrency: z.number().int().min(1).max(MAX_HTTP_CONCURRENCY).default(150),
  /**
   * Find the source's limit per origin (AIMD: slow start from 8, a cut on 429s or many
   * 503s/timeouts, +1 a round otherwise); false keeps `concurrency` in flight. @default true
   */
  adaptiveConcurrency: z.boolean().default(true),
  /** Per-request timeout. @default 10000 */
  timeoutMs: z.number().int().min(100).max(300_000).default(10_000),
  /** Retries after the first attempt on network errors, 429 and 5xx. @default 4 */
  retries: z.number().int().min(0).max(20).default(4),
  /** Base of the exponential backoff (full jitter). @default 200 */
  backoffMs: z.number().int().min(1).max(60_000).default(200),
  /** Treat a 404 as "no record": the row gets empty result columns and no error. @default true */
  notFoundIsEmpty: z.boolean().default(true),
  /**
   * Non-GET requests carry `<operation id>:<row index>` in this header, the same on every retry
   * of the row, so a source that honours it runs a retried POST once. `false` sends none.
   * @default {header: "Idempotency-Key"}
   */
  idempotencyKey: z
    .union([z.literal(false), z.strictObject({ header: headerName })])
    .default({ header: DEFAULT_IDEMPOTENCY_HEADER }),
  /** The fleet's request budget, per origin. @default none: adaptive concurrency alone */
  rateLimit: rateLimitSchema.optional(),
});

export const httpEnrichOptionsSchema = httpEnrichFields.superRefine((options, ctx) => {
  // A fixed value would make every row the same request to a source that deduplicates.
  const key = options.idempotencyKey;
  if (key === false || options.method === "GET") return;
  const clash = Object.keys(options.headers).find(
    (name) => name.toLowerCase() === key.header.toLowerCase(),
  );
  if (clash !== undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["headers", clash],
      message: `${clash} is the idempotency key's header, set per row; name another with idempotencyKey.header, or turn it off with idempotencyKey: false`,
    });
  }
});
export type HttpEnrichOptions = z.infer<typeof httpEnrichOptionsSchema>;

export const transformOptionsSchema = z.strictObject({
  /** Plugin module name in the workers' plugin directory (no paths: code is never uploaded). */
  module: z.string().regex(/^[a-z0-9][a-z0-9_-]*$/i, "a plugin name: letters, digits, - and _"),
  /** Passed to the plugin as its second argument. */
  options: z.record(z.string(), z.unknown()).default({}),
  /** Rows per task sent to a worker thread. @default 64 */
  batchSize: z.number().int().min(1).max(10_000).default(64),
});
export type TransformOptions = z.infer<typeof transformOptionsSchema>;

/** The registry of known tasks. */
export const taskOptionSchemas = {
  "http-enrich": httpEnrichOptionsSchema,
  transform: transformOptionsSchema,
} as const;

export type TaskName = keyof typeof taskOptionSchemas;

export type TaskSpec =
  | { name: "http-enrich"; options: HttpEnrichOptions }
  | { name: "transform"; options: TransformOptions };

export function isTaskName(name: string): name is TaskName {
  return Object.hasOwn(taskOptionSchemas, name);
}
