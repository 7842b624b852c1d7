/**
 * The on-demand price table shipped with the project (USD per instance-hour, Linux,
 * us-east-1), used for on-demand instances and for the all-on-demand counterfactual.
 *
 * Written down on 2026-11-23 (PRICE_TABLE_DATE) as approximate public list prices, NOT checked
 * against the AWS Pricing API (no account was at hand); the same figures the fleet budget uses
 * (src/scheduler/fleet/prices.ts), so the budget cap and the cost report agree. Check them, and
 * override with SHARDFLEET_PRICE_TABLE (a JSON file, see `loadPriceTableFile`), before trusting
 * a report's dollar figures.
 */
import { readFile } from "node:fs/promises";
import { z } from "zod";
import { ConfigError } from "../../shared/errors.ts";
import { LOCAL_INSTANCE_TYPE, LOCAL_PRICES } from "../fleet/local-capacity.ts";
import { EC2_ON_DEMAND_USD } from "../fleet/prices.ts";

export const PRICE_TABLE_DATE = "2026-11-23";

/** On-demand prices by instance type; the local stack's simulated type included. */
export const ON_DEMAND_USD_PER_HOUR: Readonly<Record<string, number>> = Object.freeze({
  ...EC2_ON_DEMAND_USD,
  [LOCAL_INSTANCE_TYPE]: LOCAL_PRICES["on-demand"][LOCAL_INSTANCE_TYPE] ?? 0.1,
});

const usdTable = z.record(z.string().min(1), z.number().nonnegative().finite());

/**
 * A price table file: `{"on-demand": {"c7g.large": 0.0725}, "spot": {"c7g.large": 0.03}}`.
 * `spot` is optional: a flat spot price per type, used when no spot history is available
 * (the local stack, or no EC2 client).
 */
export const priceTableFileSchema = z.strictObject({
  "on-demand": usdTable,
  spot: usdTable.optional(),
});
export type PriceTableFile = z.infer<typeof priceTableFileSchema>;

/** Reads and checks a price table file; a clear one-line error names what is wrong. */
export async function loadPriceTableFile(file: string): Promise<PriceTableFile> {
  let text: string;
  try {
    text = await readFile(file, "utf-8");
  } catch (err) {
    throw new ConfigError(`SHARDFLEET_PRICE_TABLE: cannot read ${file}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`SHARDFLEET_PRICE_TABLE: ${file} is not JSON: ${(err as Error).message}`);
  }
  const parsed = priceTableFileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(
      `SHARDFLEET_PRICE_TABLE: ${file}: ${issue?.path.join(".") || "(root)"}: ${issue?.message}`,
    );
  }
  return parsed.data;
}
