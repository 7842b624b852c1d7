/**
 * EC2 billing arithmetic, pure: per-second billing with a 60 s minimum per instance start, and
 * a price that may change during an instance's life (spot prices move) integrated piecewise.
 *
 * Times are epoch milliseconds. A billed run is `[start, start + billedSeconds * 1000)`: a run
 * shorter than the minimum is billed as if it had lasted the minimum, at the prices in force
 * over that (partly notional) minute — the simplest reading of "60 s minimum" that still
 * integrates a price change inside the first minute.
 */

/** AWS bills Linux instances per second, with a minimum of 60 s each time one starts. */
export const MIN_BILLED_SECONDS = 60;

/** A price in force from `from` (epoch ms) until the next point's `from`. */
export interface PricePoint {
  from: number;
  usdPerHour: number;
}

/** One stretch of a billed run at one price. */
export interface CostSegment {
  from: number;
  to: number;
  usdPerHour: number;
  usd: number;
}

/**
 * Billed seconds of a run: whole seconds (a started second is billed), at least the minimum.
 * An end before the start (clock skew between writers) counts as zero length.
 */
export function billedSeconds(startMs: number, endMs: number): number {
  const seconds = Math.ceil(Math.max(0, endMs - startMs) / 1000);
  return Math.max(MIN_BILLED_SECONDS, seconds);
}

/** The end of the billed run (start + billed seconds). */
export function billedEnd(startMs: number, endMs: number): number {
  return startMs + billedSeconds(startMs, endMs) * 1000;
}

/**
 * Sorts a price history and checks it. Before the first point, the first price applies: a
 * history that starts a little after the launch (DescribeSpotPriceHistory only lists changes)
 * should still price the launch.
 */
export function normalizePrices(prices: readonly PricePoint[]): PricePoint[] {
  if (prices.length === 0) throw new Error("no price for the instance's life");
  for (const p of prices) {
    if (!Number.isFinite(p.usdPerHour) || p.usdPerHour < 0 || !Number.isFinite(p.from)) {
      throw new Error(`invalid price point ${JSON.stringify(p)}`);
    }
  }
  return [...prices].sort((a, b) => a.from - b.from);
}

/** The run `[fromMs, toMs)` split at each price change, with the cost of each piece. */
export function costSegments(
  fromMs: number,
  toMs: number,
  prices: readonly PricePoint[],
): CostSegment[] {
  const sorted = normalizePrices(prices);
  const segments: CostSegment[] = [];
  for (let i = 0; i < sorted.length; i++) {
    const point = sorted[i]!;
    const next = sorted[i + 1];
    const from = i === 0 ? fromMs : Math.max(fromMs, point.from);
    const to = next === undefined ? toMs : Math.min(toMs, next.from);
    if (to <= from) continue;
    segments.push({
      from,
      to,
      usdPerHour: point.usdPerHour,
      usd: (point.usdPerHour * (to - from)) / 3_600_000,
    });
  }
  return segments;
}

/** What one instance run costs: billed seconds at the prices in force, and the pieces. */
export interface InstanceBill {
  billedSeconds: number;
  /** End of the billed run (≥ the real end when the minimum applied). */
  billedEnd: number;
  usd: number;
  segments: CostSegment[];
}

export function billInstance(
  startMs: number,
  endMs: number,
  prices: readonly PricePoint[],
): InstanceBill {
  const seconds = billedSeconds(startMs, endMs);
  const end = startMs + seconds * 1000;
  const segments = costSegments(startMs, end, prices);
  return {
    billedSeconds: seconds,
    billedEnd: end,
    usd: segments.reduce((sum, s) => sum + s.usd, 0),
    segments,
  };
}
