/**
 * The S3 key layout: the only place object keys are built. Everything an operation owns lives
 * under `operations/{op}/`, so one lifecycle rule expires it and one prefix lists it.
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

export const OPERATIONS_PREFIX = "operations/";
/**
 * Temporary objects (the uploaded workbook, shard slices, checkpoints, result chunks) live under
 * their own top-level prefix so a bucket lifecycle rule can expire them while the records under
 * `operations/` (manifest, fleet record, commit markers, attempts, output, cost report) stay.
 */
export const SCRATCH_PREFIX = "scratch/";

export function operationPrefix(op: string): string {
  return `${OPERATIONS_PREFIX}${checkId("operation", op)}/`;
}

export const keys = {
  operationPrefix,
  manifest: (op: string) => `${operationPrefix(op)}manifest.json`,
  /** The uploaded workbook; the file name is kept only as metadata, never in the key. */
  input: (op: string, format: "xlsx" | "csv") => `${operationPrefix(op)}input/workbook.${format}`,
  shardsPrefix: (op: string) => `${operationPrefix(op)}shards/`,
  shardPrefix: (op: string, shard: string) =>
    `${operationPrefix(op)}shards/${checkId("shard", shard)}/`,
  shardInput: (op: string, shard: string) => `${keys.shardPrefix(op, shard)}input.ndjson`,
  checkpoint: (op: string, shard: string) => `${keys.shardPrefix(op, shard)}checkpoint.json`,
  /**
   * Result chunks are named by the row range they hold, so two workers racing on one shard
   * write identical keys for identical ranges and a commit never points at a chunk that a
   * loser overwrote with a different range.
   */
  chunk: (op: string, shard: string, start: number, end: number) =>
    `${keys.shardPrefix(op, shard)}chunks/${pad(start)}-${pad(end)}.ndjson`,
  /** The commit marker: written once, with If-None-Match: *, by the first finisher. */
  done: (op: string, shard: string) => `${keys.shardPrefix(op, shard)}done.json`,
  attemptsPrefix: (op: string, shard: string) => `${keys.shardPrefix(op, shard)}attempts/`,
  attempt: (op: string, shard: string, attemptId: string) =>
    `${keys.attemptsPrefix(op, shard)}${checkId("attempt", attemptId)}.json`,
  result: (op: string) => `${operationPrefix(op)}output/result.xlsx`,
  cost: (op: string) => `${operationPrefix(op)}cost.json`,
  /**
   * The operation's fleet record: its instances and fleet events (launches, capacity errors,
   * fallbacks, straggler copies, terminations). S3 has no append, so the fleet manager (its only
   * writer) rewrites this one small document when something changed.
   */
  fleet: (op: string) => `${operationPrefix(op)}fleet/record.json`,
} as const;

/** Parses `operations/{op}/shards/{shard}/{rest}` back into its parts, or undefined. */
export function parseShardKey(
  key: string,
): { operationId: string; shardId: string; rest: string } | undefined {
  const m = /^operations\/([^/]+)\/shards\/([^/]+)\/(.+)$/.exec(key);
  if (!m) return undefined;
  return { operationId: m[1]!, shardId: m[2]!, rest: m[3]! };
}
