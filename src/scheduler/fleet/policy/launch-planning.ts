/**
 * Launch planning for one operation within one round: on-demand capacity for its stragglers
 * (within the straggler cap), then worker capacity for its backlog — market by ./market-choice.ts,
 * spot in batches (./batches.ts), every request within the caps (./sizing.ts). The round's
 * `Ledger` carries what earlier operations took, so caps hold across the whole plan; `blocked`
 * says why a needed launch was not planned (the orchestrator turns it into `waiting`).
 */
import type { InstanceRole, Market, Pool } from "../../../shared/capacity.ts";
import { spotBatches } from "./batches.ts";
import { usd } from "./format.ts";
import { availablePools, chooseMarket, describeCooling } from "./market-choice.ts";
import type { ResolvedFleetPolicy, TenantFleetCaps } from "./options.ts";
import { backlogOf, desiredInstances, fleetSpendUsd, hourlyPrice, launchRoom } from "./sizing.ts";
import { type SourceCap, sourceCap } from "./source-cap.ts";
import { servesCapacity } from "./spot-signals.ts";
import { stragglerKey } from "./stragglers.ts";
import type {
  FleetInstance,
  FleetMemory,
  LaunchDecision,
  OperationState,
  PriceTable,
} from "./types.ts";

/** What the round has taken so far against the caps: live plus planned instances and their spend. */
export interface Ledger {
  count: number;
  spend: number;
  stragglerInstances: number;
}

/** What the round has taken so far for one tenant, and its caps. */
export interface TenantLedger {
  tenant: string;
  count: number;
  spend: number;
  caps: TenantFleetCaps;
}

/**
 * Straggler and worker launches for one operation; `blocked` says why a needed one was not
 * planned; `sourceLimit` is the source cap when it held worker launches back (./source-cap.ts).
 */
export function planLaunches(
  op: OperationState,
  live: readonly FleetInstance[],
  ledger: Ledger,
  memory: FleetMemory,
  copies: ReadonlySet<string>,
  prices: PriceTable,
  now: number,
  o: ResolvedFleetPolicy,
  /** The operation's tenant's share, when it has caps. @default none */
  tenant?: TenantLedger,
): { launches: LaunchDecision[]; blocked?: string; sourceLimit?: SourceCap } {
  const launches: LaunchDecision[] = [];
  // Capacity for sizing: an instance warned of an interruption is leaving; its replacement is
  // planned now (it still counts against the caps in `ledger`: it is live and billed). A
  // rebalance recommendation alone launches nothing: it is advisory, often not followed by an
  // interruption at all, and replacing on it would double the fleet for nothing.
  const mine = live.filter((i) => i.operationId === op.id && servesCapacity(i));
  const warned = live.filter((i) => i.operationId === op.id && !servesCapacity(i)).length;

  // One on-demand instance per straggler still running, within the straggler cap.
  const stragglers = op.running.filter((s) => copies.has(stragglerKey(op.id, s.shardId))).length;
  const stragglerWant = Math.min(
    stragglers - mine.filter((i) => i.role === "straggler").length,
    o.maxStragglerInstances - ledger.stragglerInstances,
  );
  if (stragglerWant > 0) {
    const pools = priced(
      availablePools(o.pools, "on-demand", memory.poolFailures, now, o.coolingMs),
      "on-demand",
      prices,
      o,
    );
    const count =
      pools.length === 0
        ? 0
        : Math.min(stragglerWant, room(ledger, pools, "on-demand", prices, o, tenant));
    if (count > 0) {
      launches.push(
        launch(
          op.id,
          "straggler",
          "on-demand",
          count,
          pools,
          `${count} on-demand for ${stragglers} straggler(s)`,
        ),
      );
      take(ledger, tenant, count, count * worstPrice(pools, "on-demand", prices));
      ledger.stragglerInstances += count;
    }
  }

  const opMax = Math.min(o.maxInstances, op.caps?.maxInstances ?? Number.POSITIVE_INFINITY);
  const desired = desiredInstances(backlogOf(op), o.shardsPerInstance, opMax);
  if (desired === 0 && backlogOf(op) > 0) {
    return {
      launches,
      blocked:
        opMax < o.maxInstances
          ? `the operation's max instances (${opMax}) reached`
          : `max instances (${o.maxInstances}) reached`,
    };
  }
  const workers = mine.filter((i) => i.role === "worker").length;
  // The request budget's cap: no more workers than it keeps busy (a cap like the others, so
  // spot batches are not rounded up past it).
  const source = op.source ? sourceCap(op.source) : undefined;
  const sourceLimit = source && desired > source.instances ? source : undefined;
  const need = Math.min(desired, source?.instances ?? desired) - workers;
  if (need <= 0) return { launches, ...(sourceLimit ? { sourceLimit } : {}) };
  const sizing =
    `backlog ${backlogOf(op)} shards → ${desired} instance(s)` +
    (sourceLimit ? `, the request budget keeps ${sourceLimit.instances} busy` : "") +
    `, ${workers} live` +
    (warned > 0 ? ` (+${warned} warned of an interruption)` : "");
  const choice = chooseMarket(o.pools, memory.poolFailures, now, o.coolingMs);
  if (!choice) {
    const cooling = (market: Market) =>
      describeCooling(o.pools, market, memory.poolFailures, now, o.coolingMs);
    return {
      launches,
      blocked: `no spot capacity (${cooling("spot")}); no on-demand capacity (${cooling("on-demand")})`,
    };
  }
  const pools = priced(choice.pools, choice.market, prices, o);
  if (pools.length === 0) {
    return {
      launches,
      blocked: `no ${choice.market} price known for ${choice.pools.map((p) => p.instanceType).join(", ")} (needed for the hourly budget cap)`,
    };
  }
  const own = operationRoom(op, live, launches, pools, choice.market, prices);
  const cap = Math.min(
    room(ledger, pools, choice.market, prices, o, tenant),
    own.room,
    source ? source.instances - workers : Number.POSITIVE_INFINITY,
  );
  const counts =
    choice.market === "spot" ? spotBatches(need, cap) : cap > 0 ? [Math.min(need, cap)] : [];
  if (counts.length === 0) {
    return {
      launches,
      blocked: own.blocked ?? capReason(ledger, pools, choice.market, prices, o, tenant),
    };
  }
  const fallback =
    choice.market === "on-demand"
      ? `every spot pool is cooling (${describeCooling(o.pools, "spot", memory.poolFailures, now, o.coolingMs)}); `
      : "";
  counts.forEach((count, n) => {
    const batch = counts.length > 1 ? ` batch ${n + 1}/${counts.length}` : "";
    launches.push(
      launch(
        op.id,
        "worker",
        choice.market,
        count,
        pools,
        `${fallback}${choice.market}${batch}: ${sizing}`,
      ),
    );
    take(ledger, tenant, count, count * worstPrice(pools, choice.market, prices));
  });
  return { launches, ...(sourceLimit ? { sourceLimit } : {}) };
}

/**
 * Room left under the operation's own caps (`op.caps`): its live instances plus those planned
 * for it this round, and what they cost per hour. `blocked` says so when there is none.
 */
function operationRoom(
  op: OperationState,
  live: readonly FleetInstance[],
  planned: readonly LaunchDecision[],
  pools: readonly Pool[],
  market: Market,
  prices: PriceTable,
): { room: number; blocked?: string } {
  const caps = op.caps;
  if (caps?.maxInstances === undefined && caps?.maxHourlyUsd === undefined) {
    return { room: Number.POSITIVE_INFINITY };
  }
  const mine = live.filter((i) => i.operationId === op.id);
  const unitPriceUsd = worstPrice(pools, market, prices);
  let count = mine.length;
  let spendUsd = fleetSpendUsd(mine, prices);
  for (const d of planned) {
    count += d.count;
    spendUsd += d.count * worstPrice(d.pools, d.market, prices);
  }
  const room = launchRoom({
    liveInstances: count,
    spendUsd,
    unitPriceUsd,
    maxInstances: caps.maxInstances ?? Number.POSITIVE_INFINITY,
    ...(caps.maxHourlyUsd === undefined ? {} : { maxHourlyUsd: caps.maxHourlyUsd }),
  });
  if (room > 0) return { room };
  const blocked =
    caps.maxInstances !== undefined && count >= caps.maxInstances
      ? `the operation's max instances (${caps.maxInstances}) reached`
      : `the operation's hourly budget ${usd(caps.maxHourlyUsd ?? 0)}/h reached (${usd(spendUsd)}/h in use; a ${market} instance costs up to ${usd(unitPriceUsd)}/h)`;
  return { room, blocked };
}

function launch(
  operationId: string,
  role: InstanceRole,
  market: Market,
  count: number,
  pools: Pool[],
  reason: string,
): LaunchDecision {
  return { type: "launch", operationId, role, market, count, pools, reason };
}

/** Pools usable under the budget cap: with a cap, a pool needs a known price. */
function priced(pools: Pool[], market: Market, prices: PriceTable, o: ResolvedFleetPolicy): Pool[] {
  if (o.maxHourlyUsd === undefined) return pools;
  return pools.filter((p) => hourlyPrice(prices, market, p.instanceType) !== undefined);
}

/** A request may land in any of its pools, so it is budgeted at the most expensive one. */
function worstPrice(pools: readonly Pool[], market: Market, prices: PriceTable): number {
  return Math.max(0, ...pools.map((p) => hourlyPrice(prices, market, p.instanceType) ?? 0));
}

function take(ledger: Ledger, tenant: TenantLedger | undefined, count: number, spend: number) {
  ledger.count += count;
  ledger.spend += spend;
  if (tenant) {
    tenant.count += count;
    tenant.spend += spend;
  }
}

function room(
  ledger: Ledger,
  pools: readonly Pool[],
  market: Market,
  prices: PriceTable,
  o: ResolvedFleetPolicy,
  tenant?: TenantLedger,
): number {
  const unitPriceUsd = worstPrice(pools, market, prices);
  const fleet = launchRoom({
    liveInstances: ledger.count,
    spendUsd: ledger.spend,
    unitPriceUsd,
    maxInstances: o.maxInstances,
    ...(o.maxHourlyUsd === undefined ? {} : { maxHourlyUsd: o.maxHourlyUsd }),
  });
  if (!tenant) return fleet;
  const own = launchRoom({
    liveInstances: tenant.count,
    spendUsd: tenant.spend,
    unitPriceUsd,
    maxInstances: tenant.caps.maxInstances ?? Number.POSITIVE_INFINITY,
    ...(tenant.caps.maxHourlyUsd === undefined ? {} : { maxHourlyUsd: tenant.caps.maxHourlyUsd }),
  });
  return Math.min(fleet, own);
}

function capReason(
  ledger: Ledger,
  pools: readonly Pool[],
  market: Market,
  prices: PriceTable,
  o: ResolvedFleetPolicy,
  tenant?: TenantLedger,
): string {
  if (ledger.count >= o.maxInstances) return `max instances (${o.maxInstances}) reached`;
  if (
    tenant &&
    tenant.caps.maxInstances !== undefined &&
    tenant.count >= tenant.caps.maxInstances
  ) {
    return `tenant ${tenant.tenant}'s max instances (${tenant.caps.maxInstances}) reached`;
  }
  const unit = worstPrice(pools, market, prices);
  if (
    tenant &&
    tenant.caps.maxHourlyUsd !== undefined &&
    (o.maxHourlyUsd === undefined || ledger.spend + unit <= o.maxHourlyUsd)
  ) {
    return (
      `tenant ${tenant.tenant}'s hourly budget ${usd(tenant.caps.maxHourlyUsd)}/h reached (${usd(tenant.spend)}/h in use; ` +
      `a ${market} instance costs up to ${usd(unit)}/h)`
    );
  }
  return (
    `hourly budget ${usd(o.maxHourlyUsd ?? 0)}/h reached (${usd(ledger.spend)}/h in use; ` +
    `a ${market} instance costs up to ${usd(worstPrice(pools, market, prices))}/h)`
  );
}
