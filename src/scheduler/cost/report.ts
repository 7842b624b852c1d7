/**
 * Builds an operation's cost report from the ledger: the fleet records' instances (market,
 * type, AZ, life), the attempt records (busy shard-seconds per instance and operation), the
 * commit markers (for wasted work) and a price source.
 *
 * What the operation is charged, so that summing every operation's report (plus nothing else)
 * gives the fleet's bill:
 * - the share of every instance's busy cost spent on its shards, whichever operation launched
 *   the instance;
 * - the idle cost of the instances launched for it (their `launchedFor`); an instance's time on
 *   other operations' shards is shown per instance (`otherOperationsUsd`) but not charged here.
 */
import type { CostInstance, CostReport } from "../../shared/schemas/cost.ts";
import type { FleetInstanceRecord } from "../../shared/schemas/fleet.ts";
import type { Attempt, ShardDone } from "../../shared/schemas/shard.ts";
import { attributeInstance, type BusyInterval, shardWaste } from "./attribution.ts";
import { billInstance } from "./billing.ts";
import type { PriceSource } from "./price-source.ts";

/** States in which the record's `since` is the instance's end. */
const ENDED = new Set(["shutting-down", "terminated", "stopped"]);

export interface LedgerInstance {
  record: FleetInstanceRecord;
  /** The operation whose fleet record lists it. */
  launchedFor: string;
}

export interface CostInputs {
  operationId: string;
  /** Rows of the operation (for rows per dollar). */
  rows: number;
  nowMs: number;
  /** This operation's instances, and other operations' instances that ran its shards. */
  instances: readonly LedgerInstance[];
  /** Attempts on those instances, of any operation. */
  attempts: readonly Attempt[];
  /** This operation's commit markers by shard id. */
  done: ReadonlyMap<string, ShardDone>;
  prices: PriceSource;
  /** Where on-demand prices came from, for the report. */
  priceTable: string;
  signal?: AbortSignal;
}

/** An attempt's interval: it ran until it ended, or until its last sign of life. */
export function attemptInterval(a: Attempt): { from: number; to: number } {
  const from = Date.parse(a.startedAt);
  const end = a.endedAt ?? a.updatedAt ?? a.startedAt;
  return { from, to: Math.max(from, Date.parse(end)) };
}

const round = (x: number) => Math.round(x * 1e9) / 1e9;

export async function buildCostReport(inputs: CostInputs): Promise<CostReport> {
  const op = inputs.operationId;
  const byInstance = new Map<string, BusyInterval[]>();
  for (const a of inputs.attempts) {
    const list = byInstance.get(a.instanceId) ?? [];
    list.push({ key: a.attemptId, operationId: a.operationId, ...attemptInterval(a) });
    byInstance.set(a.instanceId, list);
  }
  const attemptUsd = new Map<string, number>();
  const instances: CostInstance[] = [];
  const timeline: CostReport["timeline"] = [];
  const unpriced: string[] = [];
  let provisional = false;
  let counterfactual = 0;
  const seen = new Set<string>();
  for (const { record, launchedFor } of inputs.instances) {
    if (seen.has(record.id)) continue;
    seen.add(record.id);
    const own = launchedFor === op;
    const busy = byInstance.get(record.id) ?? [];
    if (!own && !busy.some((b) => b.operationId === op)) continue;
    const start = Date.parse(record.launchedAt);
    const ended = ENDED.has(record.state);
    if (!ended) provisional = true;
    const end = ended ? Date.parse(record.since) : inputs.nowMs;
    const prices = await inputs.prices.history({
      market: record.market,
      instanceType: record.type,
      ...(record.availabilityZone ? { availabilityZone: record.availabilityZone } : {}),
      fromMs: start,
      toMs: end,
      ...(inputs.signal ? { signal: inputs.signal } : {}),
    });
    if (!prices) unpriced.push(record.id);
    const bill = billInstance(start, end, prices ?? [{ from: start, usdPerHour: 0 }]);
    const run = { start, billedEnd: bill.billedEnd };
    const actual = attributeInstance({ ...run, usd: bill.usd }, busy);
    for (const [key, usd] of actual.byInterval) attemptUsd.set(key, usd);
    const workUsd = actual.byOperation.get(op) ?? 0;
    const idleUsd = own ? actual.idleUsd : 0;
    // The counterfactual: the same split of the same seconds, at the on-demand price.
    const odPrice = inputs.prices.onDemand(record.type);
    if (odPrice !== undefined) {
      const od = attributeInstance({ ...run, usd: (odPrice * bill.billedSeconds) / 3600 }, busy);
      counterfactual += (od.byOperation.get(op) ?? 0) + (own ? od.idleUsd : 0);
    } else {
      counterfactual += workUsd + idleUsd;
    }
    const share = bill.usd > 0 ? (workUsd + idleUsd) / bill.usd : 0;
    for (const seg of bill.segments) {
      timeline.push({
        market: record.market,
        from: new Date(seg.from).toISOString(),
        to: new Date(seg.to).toISOString(),
        usd: round(seg.usd * share),
      });
    }
    instances.push({
      id: record.id,
      market: record.market,
      instanceType: record.type,
      ...(record.availabilityZone ? { availabilityZone: record.availabilityZone } : {}),
      launchedForOperation: own,
      launchedAt: record.launchedAt,
      ...(ended ? { endedAt: record.since } : {}),
      billedSeconds: bill.billedSeconds,
      instanceUsd: bill.usd,
      workUsd,
      idleUsd,
      otherOperationsUsd: bill.usd - actual.idleUsd - workUsd,
      busySeconds: actual.busySeconds,
      idleSeconds: actual.idleSeconds,
    });
  }

  // Shards run on instances no fleet record lists (a static stack): no life, no bill.
  for (const a of inputs.attempts) {
    if (a.operationId === op && !seen.has(a.instanceId) && !unpriced.includes(a.instanceId)) {
      unpriced.push(a.instanceId);
    }
  }

  const workUsd = instances.reduce((s, i) => s + i.workUsd, 0);
  const idleUsd = instances.reduce((s, i) => s + i.idleUsd, 0);
  const totalUsd = workUsd + idleUsd;

  const group = <K extends string>(keyOf: (i: CostInstance) => K) => {
    const m = new Map<K, { usd: number; instances: number }>();
    for (const i of instances) {
      const g = m.get(keyOf(i)) ?? { usd: 0, instances: 0 };
      g.usd += i.workUsd + i.idleUsd;
      g.instances += 1;
      m.set(keyOf(i), g);
    }
    return [...m].sort(([a], [b]) => a.localeCompare(b));
  };

  // Wasted work, shard by shard, over this operation's attempts.
  const byShard = new Map<string, Attempt[]>();
  for (const a of inputs.attempts) {
    if (a.operationId !== op) continue;
    const list = byShard.get(a.shardId) ?? [];
    list.push(a);
    byShard.set(a.shardId, list);
  }
  let rowsRedone = 0;
  let losingCopies = 0;
  let wastedUsd = 0;
  for (const [shardId, attempts] of byShard) {
    const marker = inputs.done.get(shardId);
    const w = shardWaste({
      committedRows: marker && marker.failed === undefined ? marker.rows : 0,
      ...(marker ? { winnerAttemptId: marker.attemptId } : {}),
      attempts: attempts.map((a) => ({
        attemptId: a.attemptId,
        rowsDone: a.rowsDone,
        cause: a.cause,
        usd: attemptUsd.get(a.attemptId) ?? 0,
      })),
    });
    rowsRedone += w.rowsRedone;
    losingCopies += w.losingCopies;
    wastedUsd += w.usd;
  }

  return {
    v: 1,
    operationId: op,
    computedAt: new Date(inputs.nowMs).toISOString(),
    provisional,
    currency: "USD",
    priceTable: inputs.priceTable,
    totalUsd: round(totalUsd),
    workUsd: round(workUsd),
    idleUsd: round(idleUsd),
    byMarket: group((i) => i.market).map(([market, g]) => ({
      market,
      usd: round(g.usd),
      instances: g.instances,
    })),
    byInstanceType: group((i) => i.instanceType).map(([instanceType, g]) => ({
      instanceType,
      usd: round(g.usd),
      instances: g.instances,
    })),
    wasted: {
      rowsRedone,
      losingCopies,
      usd: round(wastedUsd),
      percentOfTotal: totalUsd > 0 ? round((wastedUsd / totalUsd) * 100) : null,
    },
    onDemandCounterfactualUsd: round(counterfactual),
    savingPercent:
      counterfactual > 0 ? round(((counterfactual - totalUsd) / counterfactual) * 100) : null,
    rows: inputs.rows,
    rowsPerDollar: totalUsd > 0 ? round(inputs.rows / totalUsd) : null,
    instances: instances.map((i) => ({
      ...i,
      instanceUsd: round(i.instanceUsd),
      workUsd: round(i.workUsd),
      idleUsd: round(i.idleUsd),
      otherOperationsUsd: round(i.otherOperationsUsd),
    })),
    unpricedInstances: unpriced,
    timeline: timeline.sort((a, b) => a.from.localeCompare(b.from)),
  };
}
