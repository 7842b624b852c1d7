/**
 * Money and ratios as people read them, and the cost report as a plain-text table (the CLI's
 * `shardfleet cost ID`, the demo's last words). Shared by the CLI, the demo and the scheduler.
 */
import type { CostReport } from "./schemas/cost.ts";

/** Dollars in a report: 4 decimals, 6 for amounts under a cent (spot seconds cost that little). */
export function formatUsd(x: number): string {
  return `$${x.toFixed(x !== 0 && Math.abs(x) < 0.01 ? 6 : 4)}`;
}

/** Dollars in a sentence: at most 4 decimals, no trailing zeros ("$0.03"). */
export function formatUsdAmount(x: number): string {
  return `$${Number(x.toFixed(4))}`;
}

/** A percentage with one decimal; "n/a" when there is none (nothing to compare with). */
export function formatPercent(x: number | null): string {
  return x === null ? "n/a" : `${x.toFixed(1)}%`;
}

const usd = formatUsd;
const pct = formatPercent;

function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((c, i) => {
      widths[i] = Math.max(widths[i] ?? 0, c.length);
    });
  }
  return rows
    .map((row) =>
      row
        .map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

export function formatCostTable(r: CostReport): string {
  const lines: string[] = [];
  lines.push(
    `Cost of operation ${r.operationId}${r.provisional ? " (provisional: an instance still runs)" : ""}`,
  );
  lines.push(
    table([
      ["total", usd(r.totalUsd)],
      ["  work on its shards", usd(r.workUsd)],
      ["  idle instances", usd(r.idleUsd)],
      ...r.byMarket.map((m) => [`market ${m.market}`, usd(m.usd), `${m.instances} inst.`]),
      ...r.byInstanceType.map((t) => [
        `type ${t.instanceType}`,
        usd(t.usd),
        `${t.instances} inst.`,
      ]),
      [
        "wasted work",
        usd(r.wasted.usd),
        `${r.wasted.rowsRedone} rows redone, ${r.wasted.losingCopies} losing copies, ${pct(r.wasted.percentOfTotal)}${lowerBoundNote(r.wasted.uncountedAttempts)}`,
      ],
      ["all on-demand would be", usd(r.onDemandCounterfactualUsd)],
      ["saving", pct(r.savingPercent)],
      ["rows per dollar", r.rowsPerDollar === null ? "n/a" : r.rowsPerDollar.toFixed(0)],
    ]),
  );
  if (r.unpricedInstances.length > 0) {
    lines.push(`not priced (no price or no fleet record): ${r.unpricedInstances.join(", ")}`);
  }
  lines.push(`on-demand prices: ${r.priceTable}; per-second billing, 60 s minimum per start`);
  return `${lines.join("\n")}\n`;
}

/**
 * Said after wasted work when some attempts died without a word: what they did after their last
 * record is not counted, so the figure is a lower bound.
 */
export function lowerBoundNote(uncountedAttempts: number | undefined): string {
  if (!uncountedAttempts) return "";
  const s = uncountedAttempts === 1 ? "" : "s";
  return ` (at least: ${uncountedAttempts} attempt${s} ended without a record)`;
}
