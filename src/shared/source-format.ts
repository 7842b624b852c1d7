/**
 * What an http-enrich operation's source sees, as people read it: one line per origin for
 * `shardfleet status`, and a short note for progress bars and the web console. Shared by the
 * CLI and the console (which bundles it).
 */
import type { SourceView } from "./contracts/operations.ts";

/** The long line: rate against the budget, workers, concurrency, latency, 429s and failures. */
export function sourceLine(o: SourceView): string {
  const budget = o.budget === null ? "no budget" : `budget ${o.budget}/s`;
  const latency =
    o.latencyMs === undefined || o.latencyMs === null ? "" : `, latency ${o.latencyMs} ms`;
  const keeps =
    o.instances === undefined || o.instances === null
      ? ""
      : `; the budget keeps ${o.instances} instance(s) busy`;
  return `${o.origin}: ${o.requestsPerSecond} req/s (${budget}), ${o.workers} workers, concurrency ${o.concurrency} (${o.inFlight} in flight), ${o.throttled} × 429, ${o.failed} failed of ${o.requests}${latency}${keeps}`;
}

/** The short note: "48.5 of 50 req/s, concurrency 36, 3 × 429" (per origin, joined). */
export function sourceNote(origins: readonly SourceView[]): string {
  return origins
    .map((o) => {
      const rate =
        o.budget === null
          ? `${o.requestsPerSecond} req/s`
          : `${o.requestsPerSecond} of ${o.budget} req/s`;
      const host = origins.length > 1 ? `${o.origin} ` : "";
      return `${host}${rate}, concurrency ${o.concurrency}, ${o.throttled} × 429`;
    })
    .join("; ");
}
