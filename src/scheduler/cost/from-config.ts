/** Wires the cost service from the config: which price source, which table. */
import type { EC2Client } from "@aws-sdk/client-ec2";
import type { Clock } from "../../shared/clock.ts";
import type { Config } from "../../shared/config.ts";
import type { Logger } from "../../shared/logger.ts";
import type { ObjectStore } from "../../shared/object-store.ts";
import { LOCAL_PRICES } from "../fleet/local-capacity.ts";
import { CostService } from "./cost-service.ts";
import {
  loadPriceTableFile,
  ON_DEMAND_USD_PER_HOUR,
  PRICE_TABLE_DATE,
} from "./on-demand-prices.ts";
import { Ec2SpotPriceSource, TablePriceSource } from "./price-source.ts";

/**
 * EC2 capacity prices spot from DescribeSpotPriceHistory; local and static stacks use the
 * table (the local simulated spot price). SHARDFLEET_PRICE_TABLE replaces the shipped table;
 * a bad file is a ConfigError at start.
 */
export async function costServiceFromConfig(
  config: Config,
  deps: { store: ObjectStore; logger: Logger; clock: Clock; ec2?: EC2Client },
): Promise<CostService> {
  const file = config.fleet.priceTableFile;
  const table = file
    ? await loadPriceTableFile(file)
    : { "on-demand": ON_DEMAND_USD_PER_HOUR, spot: { ...LOCAL_PRICES.spot } };
  const fallback = new TablePriceSource(table);
  const prices =
    config.fleet.capacity === "ec2" && deps.ec2
      ? new Ec2SpotPriceSource({ ec2: deps.ec2, fallback })
      : fallback;
  return new CostService(
    { store: deps.store, clock: deps.clock, logger: deps.logger, prices },
    { priceTable: file ? `file ${file}` : PRICE_TABLE_DATE },
  );
}
