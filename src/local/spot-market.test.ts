import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type MarketInstance, planReclaims } from "./spot-market.ts";

const fleet = (spot: number, onDemand: number): MarketInstance[] => [
  ...Array.from({ length: spot }, (_, i) => ({
    name: `s${i}`,
    market: "spot" as const,
    reclaimable: true,
  })),
  ...Array.from({ length: onDemand }, (_, i) => ({
    name: `o${i}`,
    market: "on-demand" as const,
    reclaimable: true,
  })),
];

describe("planReclaims", () => {
  it("never reclaims on-demand or already-reclaimed instances", () => {
    fc.assert(
      fc.property(
        fc.nat(20),
        fc.nat(20),
        fc.double({ min: 0, max: 100, noNaN: true }),
        (s, o, rate) => {
          const instances = [
            ...fleet(s, o),
            { name: "gone", market: "spot" as const, reclaimable: false },
          ];
          const out = planReclaims(instances, 60_000, { reclaimsPerInstanceMinute: rate }, () => 0);
          expect(out.every((d) => d.name.startsWith("s"))).toBe(true);
          expect(out.length).toBeLessThanOrEqual(s);
        },
      ),
    );
  });

  it("reclaims nothing at rate 0 and everything when the draw is certain", () => {
    expect(planReclaims(fleet(5, 0), 60_000, { reclaimsPerInstanceMinute: 0 }, () => 0)).toEqual(
      [],
    );
    const all = planReclaims(fleet(5, 0), 60_000, { reclaimsPerInstanceMinute: 1e9 }, () => 0.3);
    expect(all).toHaveLength(5);
    expect(all.every((d) => d.kind === "notice")).toBe(true);
  });

  it("splits reclaims between notices and kills by the notice share", () => {
    let n = 0;
    const draws = () => (n++ % 2 === 0 ? 0 : 0.75); // reclaim always; kind draw 0.75
    const out = planReclaims(
      fleet(4, 0),
      1000,
      { reclaimsPerInstanceMinute: 1e9, noticeShare: 0.5 },
      draws,
    );
    expect(out.map((d) => d.kind)).toEqual(["kill", "kill", "kill", "kill"]);
  });

  it("matches the configured rate on average", () => {
    let seed = 42;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    let reclaims = 0;
    for (let t = 0; t < 2_000; t++) {
      reclaims += planReclaims(
        fleet(10, 0),
        1_000,
        { reclaimsPerInstanceMinute: 0.6 },
        random,
      ).length;
    }
    // 10 instances × 2,000 s × 0.01/s = 200 expected
    expect(reclaims).toBeGreaterThan(150);
    expect(reclaims).toBeLessThan(250);
  });
});
