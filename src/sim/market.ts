/**
 * The simulated market, the world's side of capacity: instance prices (on-demand fixed, spot a
 * log-normal walk, stepped hourly, never above on-demand) and pools (spot capacity per pool,
 * outages that refuse spot launches). `fulfil` answers a launch like CreateFleet `instant`:
 * from the request's pools in order, a full or out pool reporting a capacity error.
 */

import type { PricePoint } from "../scheduler/cost/billing.ts";
import type { LaunchDecision, PriceTable } from "../scheduler/fleet/policy.ts";
import type { LaunchedInstance, LaunchResult, Market, Pool } from "../shared/capacity.ts";
import type { Random } from "./random.ts";

export class SimPrices {
  readonly #od = new Map<string, number>();
  readonly #level = new Map<string, number>();
  readonly #history = {
    spot: new Map<string, PricePoint[]>(),
    "on-demand": new Map<string, PricePoint[]>(),
  };
  /** What the policy reads now (replaced at each step). */
  table: PriceTable;

  /** `onDemand`: USD/h per instance type; spot starts at `spotRatio` of it. */
  constructor(onDemand: ReadonlyMap<string, number>, spotRatio: number) {
    const spot: Record<string, number> = {};
    const od: Record<string, number> = {};
    for (const [t, base] of onDemand) {
      this.#od.set(t, base);
      this.#level.set(t, spotRatio);
      od[t] = base;
      spot[t] = base * spotRatio;
      this.#history.spot.set(t, [{ from: 0, usdPerHour: base * spotRatio }]);
      this.#history["on-demand"].set(t, [{ from: 0, usdPerHour: base }]);
    }
    this.table = { spot, "on-demand": od };
  }

  /** The price history an instance is billed by. */
  history(market: Market, instanceType: string): PricePoint[] {
    return this.#history[market].get(instanceType)!;
  }

  /** One hourly move of every spot price: × exp(volatility × N(0, 1)), capped at on-demand. */
  step(now: number, volatility: number, rng: Random): void {
    const spot: Record<string, number> = {};
    for (const [t, od] of this.#od) {
      const level = Math.min(1, this.#level.get(t)! * Math.exp(volatility * rng.normal()));
      this.#level.set(t, level);
      spot[t] = od * level;
      this.#history.spot.get(t)!.push({ from: now, usdPerHour: od * level });
    }
    this.table = { spot, "on-demand": this.table["on-demand"] };
  }
}

export class SimPools {
  readonly pools: readonly Pool[];
  readonly #index = new Map<string, number>();
  readonly #out: Uint8Array;
  readonly #spotUsed: Int32Array;
  readonly #spotCapacity: number;

  constructor(pools: readonly Pool[], spotCapacity: number) {
    this.pools = pools;
    for (const [i, pool] of pools.entries()) this.#index.set(SimPools.#key(pool), i);
    this.#out = new Uint8Array(pools.length);
    this.#spotUsed = new Int32Array(pools.length);
    this.#spotCapacity = spotCapacity;
  }

  static #key(pool: Pool): string {
    return `${pool.instanceType}/${pool.availabilityZone}`;
  }

  setOutage(pool: number, out: boolean): void {
    this.#out[pool] = out ? 1 : 0;
  }

  /** A spot instance of the pool ended: its capacity is free again. */
  releaseSpot(pool: number): void {
    this.#spotUsed[pool]!--;
  }

  /**
   * Answers a launch. `nextId` names instances (`i-N`); `onLaunch` gets each one's number and
   * pool index, in order.
   */
  fulfil(
    d: LaunchDecision,
    now: number,
    nextId: () => number,
    onLaunch: (id: number, pool: number) => void,
  ): LaunchResult {
    const launched: LaunchedInstance[] = [];
    const errors: LaunchResult["errors"] = [];
    let want = d.count;
    for (const pool of d.pools) {
      if (want === 0) break;
      const pi = this.#index.get(SimPools.#key(pool))!;
      let take = want;
      if (d.market === "spot") {
        const room = this.#spotCapacity - this.#spotUsed[pi]!;
        if (this.#out[pi] === 1 || room <= 0) {
          errors.push({
            pool,
            market: "spot",
            code: "InsufficientInstanceCapacity",
            message: "no spot capacity in this pool now (simulated)",
            kind: "capacity",
          });
          continue;
        }
        take = Math.min(want, room);
        this.#spotUsed[pi]! += take;
      }
      for (let k = 0; k < take; k++) {
        const id = nextId();
        onLaunch(id, pi);
        launched.push({
          instanceId: `i-${id}`,
          market: d.market,
          instanceType: pool.instanceType,
          ...(pool.availabilityZone ? { availabilityZone: pool.availabilityZone } : {}),
          launchedAt: now,
        });
      }
      want -= take;
    }
    return { launched, errors };
  }
}
