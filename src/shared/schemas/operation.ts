/**
 * The operation spec (what a user submits), the manifest (the operation's durable record in S3)
 * and operation statuses.
 */
import { z } from "zod";
import { BadInputError } from "../errors.ts";
import { type NotifySpec, notifySpecSchema } from "./notify.ts";
import { isTaskName, MAX_HTTP_CONCURRENCY, type TaskSpec, taskOptionSchemas } from "./tasks.ts";
import { DEFAULT_TENANT } from "./tokens.ts";

/**
 * The operation's lifecycle states: what `manifest.status` may hold. Only the operation state
 * machine (src/scheduler/operation-lifecycle.ts) writes them, along the transitions it lists.
 * `paused`, `cancelling` and `cancelled` are reachable only through that table's control events
 * (pause, resume, cancel), which no route offers yet.
 */
export const lifecycleStatuses = [
  "queued",
  "splitting",
  "running",
  "merging",
  "paused",
  "cancelling",
  "succeeded",
  "succeeded-with-failures",
  "failed",
  "cancelled",
] as const;
export type LifecycleStatus = (typeof lifecycleStatuses)[number];

/**
 * What the operation view says: a lifecycle state, or `waiting-for-capacity` while the fleet
 * manager's record says so of a `splitting` or `running` operation. Waiting is a condition the
 * fleet manager observes, not a lifecycle state: it is never written into a manifest.
 */
export const operationStatuses = [
  ...lifecycleStatuses,
  /** Shards to run and no capacity found yet (see the view's `waiting`); not terminal. */
  "waiting-for-capacity",
] as const;
export type OperationStatus = (typeof operationStatuses)[number];

export const TERMINAL_STATUSES: ReadonlySet<OperationStatus> = new Set([
  "succeeded",
  "succeeded-with-failures",
  "failed",
  "cancelled",
]);

/** The spec as submitted. Task options are checked against the task's own schema afterwards. */
export const operationSpecInputSchema = z.strictObject({
  version: z.literal(1).default(1),
  /** A name for people; shown in listings. */
  name: z.string().max(200).optional(),
  task: z.strictObject({
    name: z.string().min(1),
    options: z.record(z.string(), z.unknown()).default({}),
  }),
  /** Sheet to read (xlsx); the first sheet when absent. */
  sheet: z.string().min(1).optional(),
  /**
   * CSV input: `typed` turns fields that are plain numbers (and round-trip) into numbers, as an
   * xlsx cell would be; `text` keeps every field as text. @default "typed" (when absent)
   */
  csvValues: z.enum(["typed", "text"]).optional(),
  /** Rows per shard. @default 500 */
  shardSize: z.number().int().min(1).max(100_000).default(500),
  /**
   * Percent of rows that may carry an error and still count as `succeeded-with-failures`;
   * above it the operation is `failed` (its output is still downloadable). @default 10
   */
  toleratedFailurePercent: z.number().min(0).max(100).default(10),
  /** A worker checkpoints a shard every `everyRows` rows or `everySeconds`, whichever is first. */
  checkpoint: z
    .strictObject({
      /** @default 100 */
      everyRows: z.number().int().min(1).max(1_000_000).default(100),
      /** @default 15 */
      everySeconds: z.number().min(0.1).max(3600).default(15),
    })
    .default({ everyRows: 100, everySeconds: 15 }),
  /** Attempts that end in `error` before a shard is marked failed (reclaims never count). @default 3 */
  maxErrorAttempts: z.number().int().min(1).max(100).default(3),
  /** Who is told about the operation's events (webhook, email). @default nobody but the deployment's defaults */
  notify: notifySpecSchema.optional(),
});

export interface OperationSpec {
  version: 1;
  name?: string | undefined;
  task: TaskSpec;
  sheet?: string | undefined;
  csvValues?: "typed" | "text" | undefined;
  shardSize: number;
  toleratedFailurePercent: number;
  checkpoint: { everyRows: number; everySeconds: number };
  maxErrorAttempts: number;
  notify?: NotifySpec | undefined;
}

function pathOf(prefix: string, path: ReadonlyArray<PropertyKey>): string {
  return [prefix, ...path.map(String)].filter(Boolean).join(".") || "(root)";
}

/** The refusal for a schema issue, naming its JSON path (an unknown key's own path). */
function specError(prefix: string, issue: z.core.$ZodIssue): BadInputError {
  const unknownKey = issue.code === "unrecognized_keys" ? issue.keys[0] : undefined;
  const path = pathOf(prefix, unknownKey === undefined ? issue.path : [...issue.path, unknownKey]);
  // A record key's own rule says more than zod's "Invalid key in record".
  const keyRule = issue.code === "invalid_key" ? issue.issues[0]?.message : undefined;
  const message = unknownKey === undefined ? (keyRule ?? issue.message) : "unknown field";
  return new BadInputError("SPEC_INVALID", `spec ${path}: ${message}`, { details: { path } });
}

/**
 * Parses a submitted spec. Throws BadInputError with code SPEC_INVALID naming the JSON path, or
 * UNKNOWN_TASK naming the task.
 */
export function parseOperationSpec(raw: unknown): OperationSpec {
  const base = operationSpecInputSchema.safeParse(raw);
  if (!base.success) throw specError("", base.error.issues[0]!);
  const { task, ...rest } = base.data;
  if (!isTaskName(task.name)) {
    throw new BadInputError(
      "UNKNOWN_TASK",
      `spec task.name: unknown task ${JSON.stringify(task.name)} (known: ${Object.keys(taskOptionSchemas).join(", ")})`,
      { details: { task: task.name } },
    );
  }
  const options = taskOptionSchemas[task.name].safeParse(task.options);
  if (!options.success) throw specError("task.options", options.error.issues[0]!);
  return { ...rest, task: { name: task.name, options: options.data } as TaskSpec };
}

const taskSpecSchema = z.object({ name: z.string(), options: z.record(z.string(), z.unknown()) });

export const shardRangeSchema = z.object({
  id: z.string(),
  start: z.number().int().nonnegative(),
  end: z.number().int().nonnegative(),
});
export type ShardRange = z.infer<typeof shardRangeSchema>;

const timestamp = z.iso.datetime();

/**
 * An operation's own caps, changed mid-run by `PATCH /operations/:id` and honoured by the fleet
 * manager (instances, hourly USD) and workers (per-worker concurrency) within one pass. Each is
 * absent until set: the fleet's and tenant's caps (and the task's options) apply.
 */
export const operationCapsSchema = z.strictObject({
  /** Instances launched for this operation at once (on top of fleet and tenant caps). */
  maxInstances: z.number().int().min(0).max(100_000).optional(),
  /** What this operation's live instances may cost per hour, in USD. */
  maxHourlyUsd: z.number().min(0).max(1_000_000).optional(),
  /** Rows in flight per worker (http-enrich's `concurrency`). */
  concurrency: z.number().int().min(1).max(MAX_HTTP_CONCURRENCY).optional(),
  /** Scheduling priority, higher first (kept for fair share, issue 14 item 6). */
  priority: z.number().int().min(-100).max(100).optional(),
});
export type OperationCaps = z.infer<typeof operationCapsSchema>;

/** A shard of a retry: the failed rows of base shard `base` (its own slice, done marker, attempts). */
export const retryShardSchema = shardRangeSchema.extend({
  /** The original shard whose failed rows it runs again. */
  base: z.string(),
  /** Rows in its slice (the failed rows of `base`). */
  rows: z.number().int().nonnegative(),
});
export type RetryShard = z.infer<typeof retryShardSchema>;

/**
 * One retry of an operation's failed rows (`POST /operations/:id/retry`), kept for its history.
 * `shards` and `rows` are known once the scheduler planned it; `endedAt` and `status` once its
 * merge ended (or the next retry was asked for first).
 */
export const retryRecordSchema = z.object({
  /** 1 for the first retry. */
  number: z.number().int().min(1),
  requestedAt: timestamp,
  /** The task options this retry runs with (the operation's, changed by the request). */
  options: z.record(z.string(), z.unknown()),
  /** The rows it runs again (known once planned). */
  rows: z.number().int().nonnegative().optional(),
  shards: z.array(retryShardSchema).optional(),
  plannedAt: timestamp.optional(),
  endedAt: timestamp.optional(),
  /** The status the operation ended in after this retry. */
  status: z.enum(lifecycleStatuses).optional(),
  /** Error rows in the output after this retry. */
  errorRows: z.number().int().nonnegative().optional(),
});
export type RetryRecord = z.infer<typeof retryRecordSchema>;

/** The operation's durable record, `operations/{op}/manifest.json` (see `manifestSchema`). */
export const manifestBodySchema = z.object({
  v: z.literal(1),
  id: z.string(),
  /** Whose operation it is: only this tenant (and admins) see it. Old manifests: `default`. */
  tenant: z.string().min(1).default(DEFAULT_TENANT),
  status: z.enum(lifecycleStatuses),
  spec: z.object({
    version: z.literal(1),
    name: z.string().optional(),
    task: taskSpecSchema,
    sheet: z.string().optional(),
    csvValues: z.enum(["typed", "text"]).optional(),
    shardSize: z.number().int().positive(),
    toleratedFailurePercent: z.number(),
    // Optional so manifests written before these settings existed still parse.
    checkpoint: z.object({ everyRows: z.number(), everySeconds: z.number() }).optional(),
    maxErrorAttempts: z.number().int().optional(),
    notify: notifySpecSchema.optional(),
  }),
  input: z.object({
    key: z.string(),
    filename: z.string(),
    format: z.enum(["xlsx", "csv"]),
    bytes: z.number().int().nonnegative(),
  }),
  /** The operation's own caps (`PATCH /operations/:id`); absent until first set. */
  caps: operationCapsSchema.optional(),
  /** Retries of its failed rows, oldest first (`POST /operations/:id/retry`); absent until one. */
  retries: z.array(retryRecordSchema).optional(),
  /** Header names, known once the upload's first row was read. */
  headers: z.array(z.string()),
  /** Known once splitting finished. */
  rows: z.number().int().nonnegative().optional(),
  shards: z.array(shardRangeSchema).optional(),
  createdAt: timestamp,
  updatedAt: timestamp,
  startedAt: timestamp.optional(),
  finishedAt: timestamp.optional(),
  /** When it was last resumed from `paused`: a capacity wait counts from then at the latest. */
  resumedAt: timestamp.optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
  result: z
    .object({
      key: z.string(),
      rows: z.number().int().nonnegative(),
      errorRows: z.number().int().nonnegative(),
      columns: z.array(z.string()),
    })
    .optional(),
});
/** The input type: a manifest written before tenants existed has none (see `tenantOf`). */
export type Manifest = z.input<typeof manifestBodySchema>;

/** The status older releases wrote into manifests while the fleet manager found no capacity. */
const LEGACY_WAITING: OperationStatus = "waiting-for-capacity";

/**
 * A manifest written by an older release may say `waiting-for-capacity`, which is no longer a
 * lifecycle state: it reads as the state it stood for (`running` once split, else `splitting`).
 * The fleet manager notices again on its next pass that capacity is missing.
 */
function upgradeLegacyStatus(raw: unknown): unknown {
  if (typeof raw !== "object" || raw === null) return raw;
  const m = raw as { status?: unknown; shards?: unknown };
  if (m.status !== LEGACY_WAITING) return raw;
  return { ...m, status: m.shards === undefined ? "splitting" : "running" };
}

/**
 * The manifest as read and written at every boundary: `manifestBodySchema`, reading legacy
 * statuses as today's (`upgradeLegacyStatus`).
 */
export const manifestSchema = z.unknown().transform(upgradeLegacyStatus).pipe(manifestBodySchema);

/** The operation's tenant (`default` for a manifest from before tenants). */
export function tenantOf(manifest: Pick<Manifest, "tenant">): string {
  return manifest.tenant ?? DEFAULT_TENANT;
}

/** The spec as stored in a manifest, re-validated into its typed form. */
export function specOf(manifest: Manifest): OperationSpec {
  return parseOperationSpec(manifest.spec);
}

/** The retry under way: the last one, until its merge ended. */
export function openRetry(manifest: Pick<Manifest, "id" | "retries">): RetryRecord | undefined {
  const last = manifest.retries?.at(-1);
  return last && last.endedAt === undefined ? last : undefined;
}

/**
 * The shards whose commits the operation waits for now: the open retry's once planned, else the
 * split's (undefined before the split, or while a retry is being planned).
 */
export function currentShards(
  manifest: Pick<Manifest, "id" | "shards" | "retries">,
): ShardRange[] | undefined {
  const retry = openRetry(manifest);
  if (retry) return retry.shards;
  return manifest.shards;
}

/** The task an operation runs now: the spec's, with the options of its last retry if any. */
export function currentTask(manifest: Manifest): TaskSpec {
  const { task } = specOf(manifest);
  const last = manifest.retries?.at(-1);
  if (!last) return task;
  return parseOperationSpec({ ...manifest.spec, task: { name: task.name, options: last.options } })
    .task;
}
