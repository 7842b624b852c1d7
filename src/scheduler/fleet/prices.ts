/**
 * Prices the fleet manager budgets with (SHARDFLEET_MAX_HOURLY_USD). A stopgap until the cost
 * issue brings real price lookups: approximate Linux on-demand list prices in us-east-1 (USD per
 * instance-hour) for common worker types. Spot prices are left out on purpose: the policy then
 * budgets spot at the on-demand price, which overestimates spend, so the cap still holds. A type
 * that is not listed has no price: with a budget cap set, its pools are not used (the policy says
 * so in the operation's waiting reason).
 */
import type { PriceTable } from "./policy.ts";

export const EC2_ON_DEMAND_USD: Readonly<Record<string, number>> = Object.freeze({
  "c7g.large": 0.0725,
  "c7g.xlarge": 0.145,
  "c6g.large": 0.068,
  "c6g.xlarge": 0.136,
  "c7i.large": 0.08925,
  "c6i.large": 0.085,
  "c5.large": 0.085,
  "m7g.large": 0.0816,
  "m7g.xlarge": 0.1632,
  "m6g.large": 0.077,
  "m7i.large": 0.1008,
  "m6i.large": 0.096,
  "m5.large": 0.096,
  "t3.medium": 0.0416,
  "t4g.medium": 0.0336,
});

export const EC2_PRICES: PriceTable = Object.freeze({
  spot: Object.freeze({}),
  "on-demand": EC2_ON_DEMAND_USD,
});
