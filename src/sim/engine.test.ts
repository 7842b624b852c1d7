/**
 * The simulator on small seeded worlds: the live policy steers it, every shard commits once,
 * the same seed gives the same run, and each baseline differs from today's policy where its
 * world says it must.
 */
import { describe, expect, it } from "vitest";
import { DEFAULT_LAUNCH_CONCURRENCY } from "../scheduler/fleet/fleet-manager/decision-runner.ts";
import { simulate } from "./engine.ts";
import { parseSimParams, type SimParamsInput } from "./params.ts";
import { ALL_ON_DEMAND, BASELINES, SHARDFLEET, type Variant } from "./variants.ts";

const small: SimParamsInput = {
  shards: 400,
  rowsPerShard: 100,
  rowMs: 300,
  maxInstances: 30,
  seed: 7,
};
const baseline = (name: string): Variant => BASELINES.find((v) => v.name === name)!;

describe("simulate", () => {
  it("carries launches out as the live fleet manager does: up to its launchConcurrency option at once", () => {
    expect(parseSimParams(small).launchConcurrency).toBe(DEFAULT_LAUNCH_CONCURRENCY);
    const at = (k: number) =>
      simulate(parseSimParams({ ...small, maxInstances: 60, launchConcurrency: k }), SHARDFLEET);
    const one = at(1);
    const three = at(3);
    expect(one.peakLaunchesInFlight).toBe(1);
    expect(three.peakLaunchesInFlight).toBe(3);
    expect(three.finished && one.finished).toBe(true);
    // The same calls, three at a time: the fleet reaches its size sooner.
    expect(three.rampS).toBeLessThan(one.rampS);
  });

  it("records launches in flight when one reports a capacity error, then re-plans (no spot capacity)", () => {
    const r = simulate(
      parseSimParams({ ...small, poolSpotCapacity: 0, launchConcurrency: 4 }),
      SHARDFLEET,
    );
    expect(r.finished).toBe(true);
    expect(r.peakLaunchesInFlight).toBeLessThanOrEqual(4);
    // Every worker came from the on-demand fallback, and never more than the cap at once.
    expect(r.fallbackInstances).toBe(r.instancesLaunched);
    expect(r.peakInstances).toBeLessThanOrEqual(30);
    expect(r.spotUsd).toBe(0);
  });

  it("commits every shard and bills every instance", () => {
    const r = simulate(parseSimParams(small), SHARDFLEET);
    expect(r.finished).toBe(true);
    expect(r.makespanS).toBeGreaterThan(0);
    expect(r.costUsd).toBeCloseTo(r.spotUsd + r.onDemandUsd, 9);
    expect(r.idleUsd).toBeGreaterThan(0);
    expect(r.idleUsd).toBeLessThan(r.costUsd);
    expect(r.peakInstances).toBeLessThanOrEqual(30);
    // Spot is requested in batches of five or six: 30 instances take five or six calls.
    expect(r.createFleetCalls).toBeGreaterThanOrEqual(5);
  });

  it("is deterministic for a seed and differs across seeds", () => {
    const a = simulate(parseSimParams({ ...small, rateScale: 2000 }), SHARDFLEET);
    const b = simulate(parseSimParams({ ...small, rateScale: 2000 }), SHARDFLEET);
    const c = simulate(parseSimParams({ ...small, rateScale: 2000, seed: 8 }), SHARDFLEET);
    expect(b).toEqual(a);
    expect(c.costUsd).not.toBe(a.costUsd);
  });

  it("without interruptions, all-on-demand costs 1/spotRatio as much for the same work", () => {
    const p = parseSimParams({
      ...small,
      rateScale: 0,
      outagesPerPoolHour: 0,
      spotVolatility: 0,
      slowFraction: 0,
      slowHostFraction: 0,
    });
    const spot = simulate(p, SHARDFLEET);
    const od = simulate(p, ALL_ON_DEMAND);
    expect(spot.reclaims).toBe(0);
    expect(od.spotUsd).toBe(0);
    // Same shards, same fleet size; only the ramp (batches of 5–6 vs one call) and prices differ.
    expect(spot.costUsd / od.costUsd).toBeGreaterThan(0.28);
    expect(spot.costUsd / od.costUsd).toBeLessThan(0.33);
  });

  it("checkpoints cut the rows lost to reclaims without notice", () => {
    const p = parseSimParams({ ...small, rowMs: 3000, rateScale: 10_000, noticeFraction: 0 });
    const withCk = simulate(p, {
      ...SHARDFLEET,
      policy: { stragglerFactor: 1e12, stragglerInterruptions: 1e9 },
    });
    const noCk = simulate(p, {
      ...baseline("spot-no-checkpoints"),
      policy: { stragglerFactor: 1e12, stragglerInterruptions: 1e9 },
    });
    expect(withCk.reclaims).toBeGreaterThan(5);
    expect(noCk.wastedRows).toBeGreaterThan(2 * withCk.wastedRows);
    expect(noCk.finished && withCk.finished).toBe(true);
  });

  it("with a notice, the drained checkpoint loses (almost) nothing", () => {
    const p = parseSimParams({ ...small, rowMs: 3000, rateScale: 10_000, noticeFraction: 1 });
    const r = simulate(p, {
      ...SHARDFLEET,
      policy: { stragglerFactor: 1e12, stragglerInterruptions: 1e9 },
    });
    expect(r.reclaims).toBeGreaterThan(5);
    expect(r.reclaimsWithNotice).toBe(r.reclaims);
    expect(r.wastedRows).toBe(0);
  });

  it("falls back to on-demand when no spot pool has capacity; spot-no-fallback cannot", () => {
    const p = parseSimParams({ ...small, poolSpotCapacity: 0 });
    const sf = simulate(p, SHARDFLEET);
    const noFallback = simulate(p, baseline("spot-no-fallback"));
    expect(sf.fallbackInstances).toBeGreaterThan(0);
    expect(sf.onDemandUsd).toBeGreaterThan(0);
    expect(noFallback.onDemandUsd).toBe(0);
    expect(sf.finished).toBe(true);
    // Nothing to launch: the live policy fails the operation at the capacity deadline.
    expect(noFallback.finished).toBe(false);
    expect(noFallback.unfinishedReason).toMatch(/CAPACITY_DEADLINE/);
  });

  it("runs one big instance for the one-instance baseline", () => {
    const r = simulate(parseSimParams(small), baseline("one-instance"));
    expect(r.finished).toBe(true);
    expect(r.instancesLaunched).toBe(1);
    expect(r.peakInFlightMessages).toBe(32);
  });
});

describe("parseSimParams", () => {
  it("names the bad field", () => {
    expect(() => parseSimParams({ shards: 0 })).toThrow(/simulation parameter shards/);
    expect(() => parseSimParams({ band: "1-2" as "5-10" })).toThrow(/simulation parameter band/);
    expect(() => parseSimParams({ bootMinMs: 10, bootMaxMs: 5 })).toThrow(/bootMaxMs/);
  });
});
