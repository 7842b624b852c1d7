/**
 * What `/metrics` shows, as a pure function of what was observed per operation (./observe.ts)
 * and the time: the observations are read from S3 (manifests, shard commit markers, the
 * attempt records workers write, fleet records, cost reports), so worker metrics reach the
 * scheduler through the records workers already write, with no push gateway.
 */
import type { InstanceRole, InstanceState, Market } from "../../shared/capacity.ts";
import type { OperationStatus } from "../../shared/schemas/operation.ts";

export interface OperationObservation {
  id: string;
  tenant: string;
  status: OperationStatus;
  /** When it ended (ms), for the per-operation series kept a while after. */
  finishedAtMs?: number;
  rows: { total: number | null; done: number; failed: number };
  shards: { pending: number; running: number; done: number; failed: number };
  /** Worker attempts by how they ended (interrupted: reclaimed after a notice; lost: without). */
  attempts: {
    running: number;
    completed: number;
    interrupted: number;
    lost: number;
    error: number;
  };
  /** Fleet events: on-demand fallbacks and straggler copies. */
  fallbacks: number;
  stragglerCopies: number;
  instances: ReadonlyArray<{
    id: string;
    market: Market;
    role: InstanceRole;
    type: string;
    state: InstanceState;
    launchedAtMs: number;
    /** When it entered `state` (its end, once terminated). */
    sinceMs: number;
  }>;
  /** The final cost report's total, once written. */
  costUsd?: number;
}

export interface MetricsSample {
  operations: Array<{ tenant: string; status: OperationStatus; count: number }>;
  /** Shards of unfinished operations by state. */
  shards: Record<"pending" | "running" | "done" | "failed", number>;
  /** Rows committed over every operation (done includes failed rows, as in the API). */
  rows: { done: number; failed: number };
  reclaims: { notice: number; noNotice: number };
  fallbacks: number;
  stragglerCopies: number;
  /** Live instances (pending or running) by market and role. */
  instances: Array<{ market: Market; role: InstanceRole; count: number }>;
  /** Per tenant: final cost reports, plus live instance time so far at its hourly price. */
  costUsd: Array<{ tenant: string; usd: number }>;
  /** What the live instances cost an hour (0 without prices). */
  hourlyUsd: number;
  /** Per-operation series, for unfinished operations and those ended within `recentMs`. */
  perOperation: Array<{
    id: string;
    tenant: string;
    rowsDone: number;
    rowsFailed: number;
    rowsTotal: number | null;
  }>;
}

const LIVE: ReadonlySet<InstanceState> = new Set(["pending", "running"]);

/** @param hourlyPrice the instance's price, for the cost of operations not yet reported */
export function sampleOf(
  observations: readonly OperationObservation[],
  nowMs: number,
  options: {
    recentMs: number;
    hourlyPrice?: (market: Market, type: string) => number | undefined;
  },
): MetricsSample {
  const ops = new Map<string, { tenant: string; status: OperationStatus; count: number }>();
  const shards = { pending: 0, running: 0, done: 0, failed: 0 };
  const rows = { done: 0, failed: 0 };
  const reclaims = { notice: 0, noNotice: 0 };
  let fallbacks = 0;
  let stragglerCopies = 0;
  const instances = new Map<string, { market: Market; role: InstanceRole; count: number }>();
  const seenInstances = new Set<string>();
  let hourlyUsd = 0;
  const cost = new Map<string, number>();
  const perOperation: MetricsSample["perOperation"] = [];
  for (const o of observations) {
    const key = `${o.tenant}\u0000${o.status}`;
    const entry = ops.get(key) ?? { tenant: o.tenant, status: o.status, count: 0 };
    entry.count++;
    ops.set(key, entry);
    if (o.finishedAtMs === undefined) {
      shards.pending += o.shards.pending;
      shards.running += o.shards.running;
      shards.done += o.shards.done;
      shards.failed += o.shards.failed;
    }
    rows.done += o.rows.done;
    rows.failed += o.rows.failed;
    reclaims.notice += o.attempts.interrupted;
    reclaims.noNotice += o.attempts.lost;
    fallbacks += o.fallbacks;
    stragglerCopies += o.stragglerCopies;
    let usd = o.costUsd;
    let live = 0;
    for (const i of o.instances) {
      // An instance may serve more than one operation's record: count it once.
      if (LIVE.has(i.state) && !seenInstances.has(i.id)) {
        seenInstances.add(i.id);
        hourlyUsd += options.hourlyPrice?.(i.market, i.type) ?? 0;
        const k = `${i.market}\u0000${i.role}`;
        const e = instances.get(k) ?? { market: i.market, role: i.role, count: 0 };
        e.count++;
        instances.set(k, e);
      }
      if (usd === undefined) {
        const end = LIVE.has(i.state) ? nowMs : i.sinceMs;
        const price = options.hourlyPrice?.(i.market, i.type) ?? 0;
        live += (Math.max(0, end - i.launchedAtMs) / 3_600_000) * price;
      }
    }
    usd ??= live;
    cost.set(o.tenant, (cost.get(o.tenant) ?? 0) + usd);
    if (o.finishedAtMs === undefined || nowMs - o.finishedAtMs <= options.recentMs) {
      perOperation.push({
        id: o.id,
        tenant: o.tenant,
        rowsDone: o.rows.done,
        rowsFailed: o.rows.failed,
        rowsTotal: o.rows.total,
      });
    }
  }
  return {
    operations: [...ops.values()],
    shards,
    rows,
    reclaims,
    fallbacks,
    stragglerCopies,
    instances: [...instances.values()],
    costUsd: [...cost].map(([tenant, usd]) => ({ tenant, usd })),
    hourlyUsd,
    perOperation,
  };
}
