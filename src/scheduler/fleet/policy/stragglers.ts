/**
 * Stragglers: which running shards are late (past a multiple of the median shard time) or
 * interrupted too often, once nothing is pending. The plan copies each to the straggler queue
 * once (remembered by `stragglerKey`) and launches on-demand capacity for it.
 */
import type { ResolvedFleetPolicy } from "./options.ts";
import type { OperationState } from "./types.ts";

export function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * How long a shard may run before it is a straggler: max(factor × median completed time, minMs).
 * Undefined while no shard has completed: "longer than its peers" has no meaning yet.
 */
function stragglerThresholdMs(
  completedShardMs: readonly number[],
  factor: number,
  minMs: number,
): number | undefined {
  const m = median(completedShardMs);
  return m === undefined ? undefined : Math.max(factor * m, minMs);
}

export interface Straggler {
  operationId: string;
  shardId: string;
  cause: "slow" | "interrupted";
  runningMs: number;
  thresholdMs?: number;
}

/** The key a straggler copy is remembered under. */
export function stragglerKey(operationId: string, shardId: string): string {
  return `${operationId}/${shardId}`;
}

/**
 * The operation's stragglers not yet copied: only once no shard is pending and some still run;
 * then a shard is one when it has run past the threshold or been interrupted
 * `stragglerInterruptions` times.
 */
export function findStragglers(
  op: OperationState,
  now: number,
  options: Pick<
    ResolvedFleetPolicy,
    "stragglerFactor" | "stragglerMinMs" | "stragglerInterruptions"
  >,
  copied: ReadonlySet<string>,
): Straggler[] {
  if (op.pendingShards > 0 || op.running.length === 0) return [];
  const thresholdMs = stragglerThresholdMs(
    op.completedShardMs,
    options.stragglerFactor,
    options.stragglerMinMs,
  );
  const out: Straggler[] = [];
  for (const s of op.running) {
    if (copied.has(stragglerKey(op.id, s.shardId))) continue;
    const runningMs = now - s.startedAt;
    const base = { operationId: op.id, shardId: s.shardId, runningMs };
    if (s.interruptions >= options.stragglerInterruptions) {
      out.push({ ...base, cause: "interrupted" });
    } else if (thresholdMs !== undefined && runningMs > thresholdMs) {
      out.push({ ...base, cause: "slow", thresholdMs });
    }
  }
  return out;
}
