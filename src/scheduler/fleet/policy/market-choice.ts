/**
 * Market choice and pool cooling: a pool that reported a capacity error is skipped for
 * `coolingMs`, per market; worker capacity goes to spot while any spot pool is free and falls
 * back to on-demand only once every spot pool is cooling. The failures themselves are kept in
 * `FleetMemory.poolFailures` (recorded by ./launch-outcomes.ts).
 */
import { type Market, type Pool, poolKey, poolLabel } from "../../../shared/capacity.ts";
import { iso } from "./format.ts";
import type { PoolFailure } from "./types.ts";

/** The latest failure of each pool still cooling for `market` at `now`, by pool key. */
function coolingPools(
  failures: readonly PoolFailure[],
  market: Market,
  now: number,
  coolingMs: number,
): Map<string, PoolFailure> {
  const out = new Map<string, PoolFailure>();
  for (const f of failures) {
    if (f.market !== market || f.at + coolingMs <= now) continue;
    const key = poolKey(f.pool);
    const seen = out.get(key);
    if (!seen || seen.at < f.at) out.set(key, f);
  }
  return out;
}

/** The pools not cooling for `market`, in preference order. */
export function availablePools(
  pools: readonly Pool[],
  market: Market,
  failures: readonly PoolFailure[],
  now: number,
  coolingMs: number,
): Pool[] {
  const cooling = coolingPools(failures, market, now, coolingMs);
  return pools.filter((p) => !cooling.has(poolKey(p)));
}

/**
 * Where the next worker request goes: spot while any spot pool is not cooling; on-demand only
 * once every spot pool is cooling (exhausted, or every pool of the last requests reported a
 * capacity error); undefined when on-demand is exhausted too.
 */
export function chooseMarket(
  pools: readonly Pool[],
  failures: readonly PoolFailure[],
  now: number,
  coolingMs: number,
): { market: Market; pools: Pool[] } | undefined {
  for (const market of ["spot", "on-demand"] as const) {
    const free = availablePools(pools, market, failures, now, coolingMs);
    if (free.length > 0) return { market, pools: free };
  }
  return undefined;
}

/** Why no pool of `market` can be used: each cooling pool with its error and until when. */
export function describeCooling(
  pools: readonly Pool[],
  market: Market,
  failures: readonly PoolFailure[],
  now: number,
  coolingMs: number,
): string {
  if (pools.length === 0) return "no pools configured";
  const cooling = coolingPools(failures, market, now, coolingMs);
  return pools
    .map((p) => {
      const f = cooling.get(poolKey(p));
      return f
        ? `${poolLabel(p)}: ${f.code} (retry after ${iso(f.at + coolingMs)})`
        : `${poolLabel(p)}: available`;
    })
    .join("; ");
}
