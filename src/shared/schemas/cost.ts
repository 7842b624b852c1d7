/**
 * An operation's cost report (`keys.cost(op)`), written by the scheduler when the operation
 * finishes and served by `GET /operations/:id/cost`. Amounts are USD.
 */
import { z } from "zod";
import { markets } from "../capacity.ts";

const timestamp = z.iso.datetime();
const usd = z.number().finite();
const market = z.enum(markets);

export const costInstanceSchema = z.object({
  id: z.string(),
  market,
  instanceType: z.string(),
  availabilityZone: z.string().optional(),
  /** Launched for this operation (its idle time is charged here) or for another one. */
  launchedForOperation: z.boolean(),
  launchedAt: timestamp,
  /** When it ended; absent while it still ran when the report was computed. */
  endedAt: timestamp.optional(),
  billedSeconds: z.number().nonnegative(),
  /** The whole instance's bill; undefined price → 0 and listed in `unpricedInstances`. */
  instanceUsd: usd,
  /** This operation's shards on it. */
  workUsd: usd,
  /** Its idle time, when it was launched for this operation; else 0. */
  idleUsd: usd,
  /** Its time on other operations' shards (not in this report's total). */
  otherOperationsUsd: usd,
  busySeconds: z.number().nonnegative(),
  idleSeconds: z.number().nonnegative(),
});
export type CostInstance = z.infer<typeof costInstanceSchema>;

export const costReportSchema = z.object({
  v: z.literal(1),
  operationId: z.string(),
  computedAt: timestamp,
  /** Some instance still ran when computed: the figures grow until it ends (GET recomputes). */
  provisional: z.boolean(),
  currency: z.literal("USD"),
  /** The date of the shipped on-demand table (or "file" when SHARDFLEET_PRICE_TABLE is set). */
  priceTable: z.string(),
  /** workUsd + idleUsd. */
  totalUsd: usd,
  workUsd: usd,
  idleUsd: usd,
  byMarket: z.array(z.object({ market, usd, instances: z.number().int().nonnegative() })),
  byInstanceType: z.array(
    z.object({ instanceType: z.string(), usd, instances: z.number().int().nonnegative() }),
  ),
  wasted: z.object({
    /** Rows processed beyond the rows committed (after reclaims, by losing straggler copies). */
    rowsRedone: z.number().int().nonnegative(),
    losingCopies: z.number().int().nonnegative(),
    /**
     * Attempts that died without a word (hard kill, lost instance): rows they finished after
     * their last record write (every checkpoint, every 10 s) and rows in flight are not counted,
     * so `rowsRedone` is a lower bound when this is above 0. Absent in reports of older releases.
     */
    uncountedAttempts: z.number().int().nonnegative().optional(),
    usd,
    /** usd / totalUsd × 100; null when the total is 0. */
    percentOfTotal: z.number().nullable(),
  }),
  /** The same instance-seconds at on-demand prices. */
  onDemandCounterfactualUsd: usd,
  /** (counterfactual − total) / counterfactual × 100; null when the counterfactual is 0. */
  savingPercent: z.number().nullable(),
  rows: z.number().int().nonnegative(),
  /** null when the total is 0. */
  rowsPerDollar: z.number().nullable(),
  instances: z.array(costInstanceSchema),
  /**
   * This operation's charge over time, one entry per instance and price period: the instance's
   * bill for the period × the operation's share of that instance (for the chart).
   */
  timeline: z.array(z.object({ market, from: timestamp, to: timestamp, usd })),
  /** Instances with no known price, or that ran shards but no fleet record lists (billed 0). */
  unpricedInstances: z.array(z.string()),
});
export type CostReport = z.infer<typeof costReportSchema>;
