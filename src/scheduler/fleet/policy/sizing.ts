/**
 * Fleet sizing and the caps: what an operation's backlog calls for (`desiredInstances`), what
 * instances cost per hour, and how many more fit under the instance cap and the hourly budget
 * (`launchRoom`). Pure arithmetic over the policy's types; launches and scale-in build on it.
 */
import type { Market } from "../../../shared/capacity.ts";
import type { FleetInstance, OperationState, PriceTable } from "./types.ts";

/**
 * USD/h of one instance, or undefined when unknown. A spot price falls back to the on-demand
 * one: spot never bills above on-demand with the default maximum price.
 */
export function hourlyPrice(
  prices: PriceTable,
  market: Market,
  instanceType: string,
): number | undefined {
  const own = Object.hasOwn(prices[market], instanceType)
    ? prices[market][instanceType]
    : undefined;
  if (own !== undefined || market === "on-demand") return own;
  return hourlyPrice(prices, "on-demand", instanceType);
}

/**
 * What live instances cost per hour. An instance whose price is unknown counts at the highest
 * known price (conservative: the budget cap must hold).
 */
export function fleetSpendUsd(
  instances: readonly Pick<FleetInstance, "market" | "instanceType">[],
  prices: PriceTable,
): number {
  const highest = Math.max(0, ...Object.values(prices.spot), ...Object.values(prices["on-demand"]));
  return instances.reduce(
    (sum, i) => sum + (hourlyPrice(prices, i.market, i.instanceType) ?? highest),
    0,
  );
}

/** Shards an operation still has to get through: pending + running. */
export function backlogOf(op: Pick<OperationState, "pendingShards" | "running">): number {
  return op.pendingShards + op.running.length;
}

/** Instances a backlog calls for: ⌈backlog / shardsPerInstance⌉, at most `maxInstances`. */
export function desiredInstances(
  backlogShards: number,
  shardsPerInstance: number,
  maxInstances: number,
): number {
  if (backlogShards <= 0) return 0;
  return Math.min(maxInstances, Math.ceil(backlogShards / shardsPerInstance));
}

/** Tolerance of budget comparisons: float sums of prices are not exact. */
const BUDGET_EPSILON = 1e-9;

/**
 * How many more instances fit under both caps: `live + n ≤ maxInstances` and
 * `spend + n × unitPrice ≤ maxHourlyUsd` (no budget cap when `maxHourlyUsd` is absent).
 */
export function launchRoom(input: {
  liveInstances: number;
  spendUsd: number;
  unitPriceUsd: number;
  maxInstances: number;
  maxHourlyUsd?: number;
}): number {
  let room = Math.max(0, input.maxInstances - input.liveInstances);
  if (input.maxHourlyUsd !== undefined && input.unitPriceUsd > 0) {
    const left = input.maxHourlyUsd - input.spendUsd;
    let byBudget = Math.max(0, Math.floor((left + BUDGET_EPSILON) / input.unitPriceUsd));
    // Float division can round one over; the cap must hold (to a billionth of a dollar).
    while (
      byBudget > 0 &&
      input.spendUsd + byBudget * input.unitPriceUsd > input.maxHourlyUsd + BUDGET_EPSILON
    ) {
      byBudget--;
    }
    room = Math.min(room, byBudget);
  }
  return room;
}
