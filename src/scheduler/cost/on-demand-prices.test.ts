import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { systemClock } from "../../shared/clock.ts";
import { loadConfig } from "../../shared/config.ts";
import { ConfigError } from "../../shared/errors.ts";
import { silentLogger } from "../../shared/logger.ts";
import { costServiceFromConfig } from "./from-config.ts";
import { loadPriceTableFile, ON_DEMAND_USD_PER_HOUR } from "./on-demand-prices.ts";
import { TablePriceSource } from "./price-source.ts";

async function file(text: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "prices-"));
  const p = path.join(dir, "prices.json");
  await writeFile(p, text);
  return p;
}

describe("price table", () => {
  it("ships on-demand prices, the local simulated type included", () => {
    expect(ON_DEMAND_USD_PER_HOUR["c7g.large"]).toBe(0.0725);
    expect(ON_DEMAND_USD_PER_HOUR["local.small"]).toBe(0.1);
    const table = new TablePriceSource();
    expect(table.onDemand("local.small")).toBe(0.1);
  });

  it("reads an override file, and names what is wrong in a bad one", async () => {
    const good = await file('{"on-demand": {"x.large": 0.5}, "spot": {"x.large": 0.1}}');
    expect(await loadPriceTableFile(good)).toEqual({
      "on-demand": { "x.large": 0.5 },
      spot: { "x.large": 0.1 },
    });
    await expect(loadPriceTableFile(await file("{nope"))).rejects.toThrow(/is not JSON/);
    await expect(loadPriceTableFile(await file('{"on-demand": {"x.large": -1}}'))).rejects.toThrow(
      /on-demand\.x\.large/,
    );
    await expect(loadPriceTableFile("/nonexistent/prices.json")).rejects.toBeInstanceOf(
      ConfigError,
    );
  });

  it("SHARDFLEET_PRICE_TABLE reaches the cost service", async () => {
    const p = await file('{"on-demand": {"local.small": 1}}');
    const config = loadConfig({ SHARDFLEET_PRICE_TABLE: p });
    expect(config.fleet.priceTableFile).toBe(p);
    const svc = await costServiceFromConfig(config, {
      store: {} as never, // not touched until a report is asked for
      logger: silentLogger(),
      clock: systemClock,
    });
    expect(svc).toBeDefined();
    await expect(
      costServiceFromConfig(loadConfig({ SHARDFLEET_PRICE_TABLE: `${p}.missing` }), {
        store: {} as never,
        logger: silentLogger(),
        clock: systemClock,
      }),
    ).rejects.toThrow(/SHARDFLEET_PRICE_TABLE: cannot read/);
  });
});
