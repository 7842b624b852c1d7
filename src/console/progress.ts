/**
 * Pure figures from progress snapshots: rows a second over a recent window and the time left,
 * and instances by market over time from the fleet's instance list.
 */
import type { OperationInstanceView } from "../shared/contracts/operations.ts";

export interface Sample {
  /** ms since the epoch */
  at: number;
  done: number;
}

/** Rows a second over the samples of the last `windowMs` (null until two samples span time). */
export function rowsPerSecond(samples: readonly Sample[], windowMs = 30_000): number | null {
  const last = samples.at(-1);
  if (!last) return null;
  const first = samples.find((s) => s.at >= last.at - windowMs);
  if (!first || last.at - first.at < 500) return null;
  return ((last.done - first.done) * 1000) / (last.at - first.at);
}

/** Seconds left at `rate`, or null when unknown. */
export function etaSeconds(total: number | null, done: number, rate: number | null): number | null {
  if (total === null || rate === null || rate <= 0) return null;
  return Math.max(0, (total - done) / rate);
}

export function formatDuration(seconds: number): string {
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

const ENDED = new Set(["terminated", "stopped"]);

/**
 * Live instances by market at each moment an instance started or ended: x (seconds since the
 * epoch), spot and on-demand counts, as step series for a chart.
 */
export function instancesOverTime(
  instances: readonly OperationInstanceView[],
  now: number,
): { x: number[]; spot: number[]; onDemand: number[] } {
  const changes: { at: number; market: string; delta: number }[] = [];
  for (const i of instances) {
    changes.push({ at: Date.parse(i.launchedAt), market: i.market, delta: 1 });
    if (ENDED.has(i.state)) changes.push({ at: Date.parse(i.since), market: i.market, delta: -1 });
  }
  changes.sort((a, b) => a.at - b.at);
  const x: number[] = [];
  const spot: number[] = [];
  const onDemand: number[] = [];
  let s = 0;
  let d = 0;
  for (const c of changes) {
    if (c.market === "spot") s += c.delta;
    else d += c.delta;
    const t = c.at / 1000;
    if (x.at(-1) === t) {
      spot[spot.length - 1] = s;
      onDemand[onDemand.length - 1] = d;
    } else {
      x.push(t);
      spot.push(s);
      onDemand.push(d);
    }
  }
  if (x.length > 0) {
    x.push(Math.max(now / 1000, x.at(-1)!));
    spot.push(s);
    onDemand.push(d);
  }
  return { x, spot, onDemand };
}

/**
 * Cumulative cost over time from the cost report's timeline (each period accrues linearly), by
 * market, and the all-on-demand counterfactual spread like the actual spend.
 */
export function cumulativeCost(
  timeline: readonly { market: string; from: string; to: string; usd: number }[],
  totalUsd: number,
  counterfactualUsd: number,
): { x: number[]; spot: number[]; onDemand: number[]; counterfactual: number[] } {
  const periods = timeline.map((p) => ({
    market: p.market,
    from: Date.parse(p.from),
    to: Date.parse(p.to),
    usd: p.usd,
  }));
  const points = [...new Set(periods.flatMap((p) => [p.from, p.to]))].sort((a, b) => a - b);
  const at = (market: string, t: number) =>
    periods
      .filter((p) => p.market === market)
      .reduce((sum, p) => {
        if (t >= p.to) return sum + p.usd;
        if (t > p.from) return sum + (p.usd * (t - p.from)) / (p.to - p.from);
        return sum;
      }, 0);
  const scale = totalUsd > 0 ? counterfactualUsd / totalUsd : 0;
  const spot = points.map((t) => at("spot", t));
  const onDemand = points.map((t) => at("on-demand", t));
  return {
    x: points.map((t) => t / 1000),
    spot,
    onDemand,
    counterfactual: points.map((_, k) => (spot[k]! + onDemand[k]!) * scale),
  };
}
