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
import { type Attempt, RELABELLED_BY, type ShardDone } from "../../shared/schemas/shard.ts";
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

/** One instance's part of the report. */
interface InstanceCost {
  instance: CostInstance;
  /** Its billed segments, scaled to this operation's share. */
  timeline: CostReport["timeline"];
  /** What each attempt on it cost, by attempt id. */
  attemptUsd: Map<string, number>;
  /** This operation's share at the on-demand price. */
  counterfactualUsd: number;
  /** Still running: the report will change. */
  running: boolean;
  priced: boolean;
}

/** Every instance's busy intervals (attempts of any operation), by instance id. */
function busyByInstance(attempts: readonly Attempt[]): Map<string, BusyInterval[]> {
  const byInstance = new Map<string, BusyInterval[]>();
  for (const a of attempts) {
    const list = byInstance.get(a.instanceId) ?? [];
    list.push({ key: a.attemptId, operationId: a.operationId, ...attemptInterval(a) });
    byInstance.set(a.instanceId, list);
  }
  return byInstance;
}

/** Bills one instance and splits its bill between this operation's work, idle and the rest. */
async function costOfInstance(
  { record, launchedFor }: LedgerInstance,
  busy: readonly BusyInterval[],
  inputs: CostInputs,
): Promise<InstanceCost> {
  const op = inputs.operationId;
  const own = launchedFor === op;
  const start = Date.parse(record.launchedAt);
  const ended = ENDED.has(record.state);
  const end = ended ? Date.parse(record.since) : inputs.nowMs;
  const prices = await inputs.prices.history({
    market: record.market,
    instanceType: record.type,
    ...(record.availabilityZone ? { availabilityZone: record.availabilityZone } : {}),
    fromMs: start,
    toMs: end,
    ...(inputs.signal ? { signal: inputs.signal } : {}),
  });
  const bill = billInstance(start, end, prices ?? [{ from: start, usdPerHour: 0 }]);
  const run = { start, billedEnd: bill.billedEnd };
  const actual = attributeInstance({ ...run, usd: bill.usd }, busy);
  const workUsd = actual.byOperation.get(op) ?? 0;
  const idleUsd = own ? actual.idleUsd : 0;
  // The counterfactual: the same split of the same seconds, at the on-demand price.
  const odPrice = inputs.prices.onDemand(record.type);
  let counterfactualUsd = workUsd + idleUsd;
  if (odPrice !== undefined) {
    const od = attributeInstance({ ...run, usd: (odPrice * bill.billedSeconds) / 3600 }, busy);
    counterfactualUsd = (od.byOperation.get(op) ?? 0) + (own ? od.idleUsd : 0);
  }
  const share = bill.usd > 0 ? (workUsd + idleUsd) / bill.usd : 0;
  return {
    instance: {
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
    },
    timeline: bill.segments.map((seg) => ({
      market: record.market,
      from: new Date(seg.from).toISOString(),
      to: new Date(seg.to).toISOString(),
      usd: round(seg.usd * share),
    })),
    attemptUsd: actual.byInterval,
    counterfactualUsd,
    running: !ended,
    priced: prices !== undefined,
  };
}

/** Instances launched for the operation or that ran its shards, each once, billed. */
async function costOfInstances(
  inputs: CostInputs,
  busyOf: ReadonlyMap<string, BusyInterval[]>,
): Promise<InstanceCost[]> {
  const out: InstanceCost[] = [];
  const seen = new Set<string>();
  for (const entry of inputs.instances) {
    if (seen.has(entry.record.id)) continue;
    seen.add(entry.record.id);
    const busy = busyOf.get(entry.record.id) ?? [];
    const relevant =
      entry.launchedFor === inputs.operationId ||
      busy.some((b) => b.operationId === inputs.operationId);
    if (relevant) out.push(await costOfInstance(entry, busy, inputs));
  }
  return out;
}

/** Cost and instance count per key (market, type), sorted by key. */
function groupCost<K extends string>(
  instances: readonly CostInstance[],
  keyOf: (i: CostInstance) => K,
): Array<[K, { usd: number; instances: number }]> {
  const m = new Map<K, { usd: number; instances: number }>();
  for (const i of instances) {
    const g = m.get(keyOf(i)) ?? { usd: 0, instances: 0 };
    g.usd += i.workUsd + i.idleUsd;
    g.instances += 1;
    m.set(keyOf(i), g);
  }
  return [...m].sort(([a], [b]) => a.localeCompare(b));
}

/**
 * An attempt that died without a word (SIGKILL, a lost instance): its record is still `running`,
 * or another worker relabelled it `lost`. What it did after its last record write is unknown.
 */
function diedWithoutRecord(a: Attempt): boolean {
  return a.cause === "running" || (a.cause === "lost" && (a.error ?? "").startsWith(RELABELLED_BY));
}

/** Wasted work, shard by shard, over the operation's attempts. */
function wastedWork(
  inputs: CostInputs,
  attemptUsd: ReadonlyMap<string, number>,
): { rowsRedone: number; losingCopies: number; usd: number; uncountedAttempts: number } {
  const byShard = new Map<string, Attempt[]>();
  for (const a of inputs.attempts) {
    if (a.operationId !== inputs.operationId) continue;
    const list = byShard.get(a.shardId) ?? [];
    list.push(a);
    byShard.set(a.shardId, list);
  }
  const total = { rowsRedone: 0, losingCopies: 0, usd: 0, uncountedAttempts: 0 };
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
        startedAtMs: Date.parse(a.startedAt),
        ...(a.startCursor === undefined ? {} : { startCursor: a.startCursor }),
      })),
    });
    total.uncountedAttempts += attempts.filter(diedWithoutRecord).length;
    total.rowsRedone += w.rowsRedone;
    total.losingCopies += w.losingCopies;
    total.usd += w.usd;
  }
  return total;
}

/**
 * Instances the report could not price: no price history, or (a static stack) shards ran on
 * instances no fleet record lists, so they have no life and no bill.
 */
function unpricedInstances(inputs: CostInputs, costs: readonly InstanceCost[]): string[] {
  const unpriced = costs.filter((c) => !c.priced).map((c) => c.instance.id);
  const listed = new Set(inputs.instances.map((i) => i.record.id));
  for (const a of inputs.attempts) {
    if (
      a.operationId === inputs.operationId &&
      !listed.has(a.instanceId) &&
      !unpriced.includes(a.instanceId)
    ) {
      unpriced.push(a.instanceId);
    }
  }
  return unpriced;
}

export async function buildCostReport(inputs: CostInputs): Promise<CostReport> {
  const costs = await costOfInstances(inputs, busyByInstance(inputs.attempts));
  const instances = costs.map((c) => c.instance);
  const attemptUsd = new Map(costs.flatMap((c) => [...c.attemptUsd]));
  const counterfactual = costs.reduce((s, c) => s + c.counterfactualUsd, 0);
  const workUsd = instances.reduce((s, i) => s + i.workUsd, 0);
  const idleUsd = instances.reduce((s, i) => s + i.idleUsd, 0);
  const totalUsd = workUsd + idleUsd;
  const wasted = wastedWork(inputs, attemptUsd);
  return {
    v: 1,
    operationId: inputs.operationId,
    computedAt: new Date(inputs.nowMs).toISOString(),
    provisional: costs.some((c) => c.running),
    currency: "USD",
    priceTable: inputs.priceTable,
    totalUsd: round(totalUsd),
    workUsd: round(workUsd),
    idleUsd: round(idleUsd),
    byMarket: groupCost(instances, (i) => i.market).map(([market, g]) => ({
      market,
      usd: round(g.usd),
      instances: g.instances,
    })),
    byInstanceType: groupCost(instances, (i) => i.instanceType).map(([instanceType, g]) => ({
      instanceType,
      usd: round(g.usd),
      instances: g.instances,
    })),
    wasted: {
      rowsRedone: wasted.rowsRedone,
      losingCopies: wasted.losingCopies,
      uncountedAttempts: wasted.uncountedAttempts,
      usd: round(wasted.usd),
      percentOfTotal: totalUsd > 0 ? round((wasted.usd / totalUsd) * 100) : null,
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
    unpricedInstances: unpricedInstances(inputs, costs),
    timeline: costs.flatMap((c) => c.timeline).sort((a, b) => a.from.localeCompare(b.from)),
  };
}
