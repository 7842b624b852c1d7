import { describe, expect, it } from "vitest";
import type { LaunchDecision } from "../scheduler/fleet/policy.ts";
import { SimPools, SimPrices } from "./market.ts";
import { Random } from "./random.ts";

const pools = [
  { instanceType: "c6i.large", availabilityZone: "a" },
  { instanceType: "c6i.large", availabilityZone: "b" },
];
const spot = (count: number): LaunchDecision => ({
  type: "launch",
  operationId: "op",
  role: "worker",
  market: "spot",
  count,
  pools,
  reason: "test",
});

describe("SimPools", () => {
  it("fills from the pools in order, reports a full or out pool as a capacity error", () => {
    const market = new SimPools(pools, 4);
    let id = 0;
    const placed: number[] = [];
    const first = market.fulfil(
      spot(6),
      1000,
      () => id++,
      (_, pool) => placed.push(pool),
    );
    expect(first.launched.map((i) => i.instanceId)).toEqual([
      "i-0",
      "i-1",
      "i-2",
      "i-3",
      "i-4",
      "i-5",
    ]);
    expect(placed).toEqual([0, 0, 0, 0, 1, 1]);
    expect(first.errors).toEqual([]);

    market.setOutage(1, true);
    const second = market.fulfil(
      spot(2),
      2000,
      () => id++,
      () => {},
    );
    expect(second.launched).toEqual([]);
    expect(second.errors.map((e) => [e.pool?.availabilityZone, e.code, e.kind])).toEqual([
      ["a", "InsufficientInstanceCapacity", "capacity"],
      ["b", "InsufficientInstanceCapacity", "capacity"],
    ]);

    market.releaseSpot(0);
    const third = market.fulfil(
      spot(2),
      3000,
      () => id++,
      () => {},
    );
    expect(third.launched).toHaveLength(1);
    expect(third.errors).toHaveLength(1);
    // On-demand is not limited by spot capacity or outages.
    const od = market.fulfil(
      { ...spot(3), market: "on-demand" },
      4000,
      () => id++,
      () => {},
    );
    expect(od.launched).toHaveLength(3);
  });
});

describe("SimPrices", () => {
  it("starts spot at the ratio, moves it hourly, never above on-demand, and keeps the history", () => {
    const prices = new SimPrices(new Map([["c6i.large", 0.1]]), 0.3);
    expect(prices.table.spot["c6i.large"]).toBeCloseTo(0.03, 12);
    const rng = new Random(1);
    for (let h = 1; h <= 50; h++) prices.step(h * 3_600_000, 2, rng);
    const history = prices.history("spot", "c6i.large");
    expect(history).toHaveLength(51);
    expect(history.every((p) => p.usdPerHour <= 0.1 + 1e-12)).toBe(true);
    expect(new Set(history.map((p) => p.usdPerHour)).size).toBeGreaterThan(2);
    expect(prices.history("on-demand", "c6i.large")).toEqual([{ from: 0, usdPerHour: 0.1 }]);
  });
});
