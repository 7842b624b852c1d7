/**
 * Where the cost report's prices come from: a price history per (market, type, AZ) over an
 * instance's life.
 *
 * - On-demand: the shipped table (on-demand-prices.ts), or the SHARDFLEET_PRICE_TABLE file.
 * - Spot on EC2: DescribeSpotPriceHistory for the type and AZ over the instance's life, cached
 *   (a finished instance's history never changes, and reports are rebuilt after restarts).
 * - Spot locally / without an EC2 client: the flat spot price of the table (the local stack's
 *   documented simulated prices: spot $0.03/h, on-demand $0.10/h for `local.small`).
 */
import { DescribeSpotPriceHistoryCommand, type EC2Client } from "@aws-sdk/client-ec2";
import { LOCAL_PRICES } from "../fleet/local-capacity.ts";
import type { PricePoint } from "./billing.ts";
import { ON_DEMAND_USD_PER_HOUR, type PriceTableFile } from "./on-demand-prices.ts";

export type Market = "spot" | "on-demand";

export interface PriceQuery {
  market: Market;
  instanceType: string;
  availabilityZone?: string;
  fromMs: number;
  toMs: number;
  signal?: AbortSignal;
}

export interface PriceSource {
  /** The prices in force over [fromMs, toMs); undefined when the type has no known price. */
  history(query: PriceQuery): Promise<PricePoint[] | undefined>;
  /** The on-demand price of a type (the counterfactual); undefined when unknown. */
  onDemand(instanceType: string): number | undefined;
}

/** Flat prices from a table: on-demand always, spot when listed. */
export class TablePriceSource implements PriceSource {
  readonly #table: PriceTableFile;

  /** @param table @default the shipped on-demand table + the local simulated spot price */
  constructor(table?: PriceTableFile) {
    this.#table = table ?? {
      "on-demand": ON_DEMAND_USD_PER_HOUR,
      spot: { ...LOCAL_PRICES.spot },
    };
  }

  onDemand(instanceType: string): number | undefined {
    return this.#table["on-demand"][instanceType];
  }

  async history(query: PriceQuery): Promise<PricePoint[] | undefined> {
    const usd =
      query.market === "on-demand"
        ? this.onDemand(query.instanceType)
        : this.#table.spot?.[query.instanceType];
    return usd === undefined ? undefined : [{ from: query.fromMs, usdPerHour: usd }];
  }
}

export interface Ec2SpotPriceSourceDeps {
  ec2: EC2Client;
  /** On-demand prices, and spot when EC2 has no history. @default new TablePriceSource() */
  fallback?: PriceSource;
}

export interface Ec2SpotPriceSourceOptions {
  /** The product description spot prices are asked for. @default "Linux/UNIX" */
  productDescription?: string;
  /** Cached histories kept (oldest dropped first). @default 1000 */
  maxCached?: number;
}

/** Spot prices from DescribeSpotPriceHistory; everything else from the fallback table. */
export class Ec2SpotPriceSource implements PriceSource {
  readonly #ec2: EC2Client;
  readonly #fallback: PriceSource;
  readonly #product: string;
  readonly #maxCached: number;
  readonly #cache = new Map<string, Promise<PricePoint[] | undefined>>();

  constructor(deps: Ec2SpotPriceSourceDeps, options: Ec2SpotPriceSourceOptions = {}) {
    this.#ec2 = deps.ec2;
    this.#fallback = deps.fallback ?? new TablePriceSource();
    this.#product = options.productDescription ?? "Linux/UNIX";
    this.#maxCached = options.maxCached ?? 1000;
  }

  onDemand(instanceType: string): number | undefined {
    return this.#fallback.onDemand(instanceType);
  }

  history(query: PriceQuery): Promise<PricePoint[] | undefined> {
    if (query.market !== "spot" || !query.availabilityZone) return this.#fallback.history(query);
    const key = `${query.instanceType}|${query.availabilityZone}|${query.fromMs}|${query.toMs}`;
    let cached = this.#cache.get(key);
    if (!cached) {
      cached = this.#fetch(query);
      // A failed lookup is not cached: the next report asks again.
      cached.catch(() => this.#cache.delete(key));
      this.#cache.set(key, cached);
      if (this.#cache.size > this.#maxCached) {
        const oldest = this.#cache.keys().next().value;
        if (oldest !== undefined) this.#cache.delete(oldest);
      }
    }
    return cached;
  }

  async #fetch(query: PriceQuery): Promise<PricePoint[] | undefined> {
    const points: PricePoint[] = [];
    let nextToken: string | undefined;
    do {
      const out = await this.#ec2.send(
        new DescribeSpotPriceHistoryCommand({
          InstanceTypes: [query.instanceType as never],
          AvailabilityZone: query.availabilityZone,
          ProductDescriptions: [this.#product],
          // The answer includes the price in force at StartTime (its change may be earlier).
          StartTime: new Date(query.fromMs),
          EndTime: new Date(query.toMs),
          NextToken: nextToken,
        }),
        { abortSignal: query.signal },
      );
      for (const p of out.SpotPriceHistory ?? []) {
        const usd = Number(p.SpotPrice);
        if (p.Timestamp === undefined || !Number.isFinite(usd)) continue;
        if (p.AvailabilityZone && p.AvailabilityZone !== query.availabilityZone) continue;
        points.push({ from: new Date(p.Timestamp).getTime(), usdPerHour: usd });
      }
      nextToken = out.NextToken || undefined;
    } while (nextToken);
    if (points.length === 0) return this.#fallback.history(query);
    return points.sort((a, b) => a.from - b.from);
  }
}
