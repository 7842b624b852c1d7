/**
 * The fleet sized to what the source accepts (issue 18): an operation with a request budget gets
 * no more worker instances than the budget can keep busy. Pure: the fleet policy and the
 * simulator call it.
 *
 * "Budget ÷ rows a second per instance" would go round in a circle: under a budget a worker's
 * rate IS its share. What the budget does not cap is what a worker measures of the source: its
 * adaptive concurrency (how many requests the source takes at once from it) and the latency of
 * its answers. By Little's law one instance can send about concurrency ÷ latency requests a
 * second, so the budget keeps ⌈budget ÷ that⌉ instances busy (at least one). Requests per row do
 * not enter: the budget and an instance's capacity are both counted in requests. Per origin
 * (a rateLimit holds per origin), the origin needing most instances decides.
 *
 * Before any worker has measured the source, the cap is one spot batch (`UNMEASURED_INSTANCES`),
 * as an operation's first launch is without a budget: enough to measure, and the batch a cold
 * fleet would ask for anyway.
 */

/** What an operation with a rateLimit tells the fleet policy about its source. */
export interface SourceBudget {
  /** The rateLimit: requests a second each origin may see from the whole fleet. */
  requestsPerSecond: number;
  /** What each live worker measured, per origin: its adaptive concurrency and mean latency. */
  measured: ReadonlyArray<{ origin: string; concurrency: number; latencyMs: number }>;
}

/** How many instances the budget keeps busy, and why. */
export interface SourceCap {
  instances: number;
  /** False while no worker has measured the source yet (the cap is then one batch). */
  measured: boolean;
  /** One line for the fleet events. */
  reason: string;
}

/** The cap before any measurement: one spot batch, the largest (./batches.ts). */
export const UNMEASURED_INSTANCES = 6;

/** Latencies under this are taken as this (a loopback source answers in well under 1 ms). */
const MIN_LATENCY_MS = 1;

/** The median of a non-empty list. */
function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Instances the budget can keep busy (pure). */
export function sourceCap(budget: SourceBudget): SourceCap {
  const byOrigin = new Map<string, number[]>();
  for (const m of budget.measured) {
    if (!(m.concurrency > 0) || !Number.isFinite(m.latencyMs) || m.latencyMs < 0) continue;
    const perSecond = (m.concurrency * 1000) / Math.max(MIN_LATENCY_MS, m.latencyMs);
    byOrigin.set(m.origin, [...(byOrigin.get(m.origin) ?? []), perSecond]);
  }
  if (byOrigin.size === 0) {
    return {
      instances: UNMEASURED_INSTANCES,
      measured: false,
      reason: `request budget ${budget.requestsPerSecond}/s: no worker has measured the source yet, so at most one batch (${UNMEASURED_INSTANCES}) until one has`,
    };
  }
  let worst: { origin: string; perInstance: number; instances: number } | undefined;
  for (const [origin, rates] of byOrigin) {
    // The median worker: one slow or fresh worker (concurrency still ramping) does not decide.
    const perInstance = median(rates);
    const instances = Math.max(1, Math.ceil(budget.requestsPerSecond / perInstance));
    if (!worst || instances > worst.instances) worst = { origin, perInstance, instances };
  }
  const w = worst!;
  return {
    instances: w.instances,
    measured: true,
    reason: `request budget ${budget.requestsPerSecond}/s keeps ${w.instances} instance(s) busy: one sends up to ${round(w.perInstance)}/s to ${w.origin} (adaptive concurrency ÷ latency)`,
  };
}

function round(n: number): string {
  return n >= 100 ? n.toFixed(0) : n.toPrecision(2);
}
