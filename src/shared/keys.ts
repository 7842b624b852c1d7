/**
 * The S3 key layout: the only place object keys are built. An operation owns two prefixes:
 *
 * - `operations/{op}/`, durable records kept after the run: the manifest, the fleet record,
 *   each shard's commit marker (`done.json`) and attempt records, the result and the cost report.
 * - `scratch/{op}/`, temporary objects only the run needs: the uploaded workbook, the shard
 *   slices, checkpoints and result chunks.
 *
 * A bucket lifecycle rule on `scratch/` alone can thus expire the bulky intermediates without
 * touching anything the status, cost report or download read afterwards. Deleting an operation
 * means deleting both prefixes (`operationPrefixes`).
 */

const ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;

function checkId(kind: string, id: string): string {
  if (!ID.test(id)) throw new Error(`invalid ${kind} id ${JSON.stringify(id)}`);
  return id;
}

/** Zero-padded so lexicographic key order is row order. */
function pad(n: number): string {
  return String(n).padStart(10, "0");
}

/** Shard ids are the zero-padded shard index, so listing order is input order. */
export function shardIdFor(index: number): string {
  return `s${String(index).padStart(6, "0")}`;
}

/**
 * The shard id of retry `retry` of base shard `base`: a shard of its own (slice, checkpoint,
 * chunks, attempts, `done.json`), so every per-shard record of a retry is keyed apart from the
 * original's and from other retries'. Sorts right after its base shard.
 */
export function retryShardIdFor(base: string, retry: number): string {
  if (!Number.isInteger(retry) || retry < 1) throw new Error(`invalid retry number ${retry}`);
  return checkId("shard", `${checkId("shard", base)}-r${retry}`);
}

export const OPERATIONS_PREFIX = "operations/";
/**
 * Temporary objects (the uploaded workbook, shard slices, checkpoints, result chunks) live under
 * their own top-level prefix so a bucket lifecycle rule can expire them while the records under
 * `operations/` (manifest, fleet record, commit markers, attempts, output, cost report) stay.
 */
export const SCRATCH_PREFIX = "scratch/";

/** The operation's durable prefix. */
export function operationPrefix(op: string): string {
  return `${OPERATIONS_PREFIX}${checkId("operation", op)}/`;
}

/** The operation's temporary prefix. */
export function scratchPrefix(op: string): string {
  return `${SCRATCH_PREFIX}${checkId("operation", op)}/`;
}

/**
 * Records of the bucket's scheduler itself, outside any operation (never listed as one, never
 * expired by the scratch lifecycle rule).
 */
export const SCHEDULER_PREFIX = "scheduler/";

export const keys = {
  operationPrefix,
  scratchPrefix,
  /** Every prefix the operation owns: what deleting it must clear. */
  operationPrefixes: (op: string): readonly string[] => [operationPrefix(op), scratchPrefix(op)],

  /** The scheduler lease: which scheduler process is the active one for this bucket. */
  schedulerLease: () => `${SCHEDULER_PREFIX}lease.json`,

  // Durable, under operations/{op}/.
  manifest: (op: string) => `${operationPrefix(op)}manifest.json`,
  /** Per-shard records: commit markers and attempts. */
  shardsPrefix: (op: string) => `${operationPrefix(op)}shards/`,
  shardPrefix: (op: string, shard: string) => `${keys.shardsPrefix(op)}${checkId("shard", shard)}/`,
  /** The commit marker: written once, with If-None-Match: *, by the first finisher. */
  done: (op: string, shard: string) => `${keys.shardPrefix(op, shard)}done.json`,
  attemptsPrefix: (op: string, shard: string) => `${keys.shardPrefix(op, shard)}attempts/`,
  attempt: (op: string, shard: string, attemptId: string) =>
    `${keys.attemptsPrefix(op, shard)}${checkId("attempt", attemptId)}.json`,
  /**
   * The sweep's re-drives of a shard (src/scheduler/sweep/): one small record per re-drive, named
   * by its time, so the listing the scheduler already makes of the shards prefix shows them.
   */
  redrivesPrefix: (op: string, shard: string) => `${keys.shardPrefix(op, shard)}redrives/`,
  redrive: (op: string, shard: string, atMs: number) =>
    `${keys.redrivesPrefix(op, shard)}${String(Math.max(0, Math.floor(atMs))).padStart(15, "0")}.json`,
  result: (op: string) => `${operationPrefix(op)}output/result.xlsx`,
  cost: (op: string) => `${operationPrefix(op)}cost.json`,
  /**
   * The operation's fleet record: its instances and fleet events (launches, capacity errors,
   * fallbacks, straggler copies, terminations). S3 has no append, so the fleet manager (its only
   * writer) rewrites this one small document when something changed.
   */
  fleet: (op: string) => `${operationPrefix(op)}fleet/record.json`,
  /**
   * The operation's dispatch record: how many of its shards the scheduler's dispatcher has put
   * on the work queue (fair share). Written only by src/scheduler/dispatch/dispatch-record.ts,
   * created with If-None-Match: * and advanced with If-Match.
   */
  dispatch: (op: string) => `${operationPrefix(op)}dispatch.json`,
  /** One record per notification event (see schemas/notify.ts), created with If-None-Match: *. */
  notificationsPrefix: (op: string) => `${operationPrefix(op)}notifications/`,
  notification: (op: string, event: string) =>
    `${keys.notificationsPrefix(op)}${checkId("event", event)}.json`,

  // Temporary, under scratch/{op}/.
  /** The uploaded workbook; the file name is kept only as metadata, never in the key. */
  input: (op: string, format: "xlsx" | "csv") => `${scratchPrefix(op)}input/workbook.${format}`,
  /** Per-shard temporaries: slices, checkpoints, result chunks. */
  scratchShardsPrefix: (op: string) => `${scratchPrefix(op)}shards/`,
  scratchShardPrefix: (op: string, shard: string) =>
    `${keys.scratchShardsPrefix(op)}${checkId("shard", shard)}/`,
  shardInput: (op: string, shard: string) => `${keys.scratchShardPrefix(op, shard)}input.ndjson`,
  /**
   * An xlsx shard's input: the sheet's own `<row>` XML for the shard's rows, cut by the splitter
   * and parsed by the worker (src/shared/slices.ts). Used when `sliceContext` exists.
   */
  shardSheetSlice: (op: string, shard: string) => `${keys.scratchShardPrefix(op, shard)}input.xml`,
  /** What an xlsx operation's sheet slices need to be read: styles, 1904 dates (see slices.ts). */
  sliceContext: (op: string) => `${scratchPrefix(op)}input/slice-context.json`,
  /** The workbook's shared-string table (`xl/sharedStrings.xml`), stored once per operation. */
  sharedStrings: (op: string) => `${scratchPrefix(op)}input/shared-strings.xml`,
  checkpoint: (op: string, shard: string) => `${keys.scratchShardPrefix(op, shard)}checkpoint.json`,
  chunksPrefix: (op: string, shard: string) => `${keys.scratchShardPrefix(op, shard)}chunks/`,
  /**
   * The workers of an `http-enrich` operation (they divide its request budget): one small record
   * per worker and membership (a worker that leaves and comes back is a new member), renewed
   * every few seconds; a member that leaves writes a `.left` marker beside it (workers may not
   * delete). Each worker counts the fresh records without a marker to take its share
   * (`src/worker/budget/`). Under scratch/: workers may write there, and it is temporary.
   */
  budgetPeersPrefix: (op: string) => `${scratchPrefix(op)}budget-peers/`,
  budgetPeer: (op: string, instanceId: string, member: string) =>
    `${keys.budgetPeersPrefix(op)}${budgetMember(instanceId, member)}.json`,
  budgetPeerLeft: (op: string, instanceId: string, member: string) =>
    `${keys.budgetPeersPrefix(op)}${budgetMember(instanceId, member)}.left`,
  /**
   * Result chunks are named by the row range they hold, so two workers racing on one shard
   * write identical keys for identical ranges and a commit never points at a chunk that a
   * loser overwrote with a different range.
   */
  chunk: (op: string, shard: string, start: number, end: number) =>
    `${keys.chunksPrefix(op, shard)}${pad(start)}-${pad(end)}.ndjson`,
  /** Output sheet segments (rendered rows, raw deflate), beside the result chunks. */
  segmentsPrefix: (op: string, shard: string) => `${keys.scratchShardPrefix(op, shard)}segments/`,
  /**
   * A chunk's rows rendered as output sheet XML by one attempt. The attempt is in the name: a
   * done.json records the segment's CRC and lengths, so no other attempt may overwrite it.
   */
  segment: (op: string, shard: string, start: number, end: number, attemptId: string) =>
    `${keys.segmentsPrefix(op, shard)}${pad(start)}-${pad(end)}.${checkId("attempt", attemptId)}.xml.deflate`,

  // Outside any operation, under scratch/ (workers may write there; it expires).
  /**
   * A worker's report that it is up: written once, after its first receive from the work queue
   * (src/shared/records/worker-report.ts). The fleet manager counts an instance's idle time from
   * it, not from launch. `_` cannot start an operation id, so no operation's prefix holds it.
   */
  workerReport: (instanceId: string) =>
    `${SCRATCH_PREFIX}_workers/${checkId("instance", keySafe(instanceId))}.json`,
} as const;

/** An instance id (from EC2 or config: a host name may hold dots) in key-safe characters. */
function keySafe(instanceId: string, maxLength = 120): string {
  return instanceId.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, maxLength);
}

function budgetMember(instanceId: string, member: string): string {
  return checkId("budget member", `i${keySafe(instanceId, 100)}-${checkId("member", member)}`);
}

/**
 * A key under `budgetPeersPrefix` back into its member (instance and membership, as one name)
 * and whether it is the record or the left marker; undefined for anything else.
 */
export function parseBudgetPeerKey(key: string): { member: string; left: boolean } | undefined {
  const m = /\/budget-peers\/([^/]+)\.(json|left)$/.exec(key);
  if (!m) return undefined;
  return { member: m[1]!, left: m[2] === "left" };
}

/** The time (ms) in the `rest` of a re-drive record's shard key (`redrives/{ms}.json`), or undefined. */
export function redriveTimeOf(rest: string): number | undefined {
  const m = /^redrives\/(\d{15})\.json$/.exec(rest);
  return m ? Number(m[1]) : undefined;
}

/** A parsed per-shard key; `scratch` says which of the operation's prefixes it is under. */
export interface ShardKey {
  scratch: boolean;
  operationId: string;
  shardId: string;
  rest: string;
}

/**
 * Parses `operations/{op}/shards/{shard}/{rest}` or `scratch/{op}/shards/{shard}/{rest}` back
 * into its parts, or undefined.
 */
export function parseShardKey(key: string): ShardKey | undefined {
  const m = /^(operations|scratch)\/([^/]+)\/shards\/([^/]+)\/(.+)$/.exec(key);
  if (!m) return undefined;
  return { scratch: m[1] === "scratch", operationId: m[2]!, shardId: m[3]!, rest: m[4]! };
}

/**
 * What a worker may write, as IAM resource patterns relative to the bucket (`*` matches any run
 * of characters, `/` included): scratch objects (slices, checkpoints, result chunks), attempt
 * records and commit markers. Nothing else under `operations/` — not a manifest, fleet record,
 * output or cost report. One role serves every operation's workers, so IAM cannot narrow this
 * to the worker's own operation; the shard message names it.
 */
export const WORKER_WRITABLE_PATTERNS = {
  scratch: `${SCRATCH_PREFIX}*`,
  attempts: `${OPERATIONS_PREFIX}*/shards/*/attempts/*`,
  done: `${OPERATIONS_PREFIX}*/shards/*/done.json`,
} as const;

/** Whether `key` matches an IAM resource `pattern` (`*` any run, `?` one character). */
export function matchesIamPattern(pattern: string, key: string): boolean {
  const re = pattern
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/\?/g, ".");
  return new RegExp(`^${re}$`).test(key);
}
