/** Printing a comparison: the table `shardfleet simulate` shows, and its `--json` object. */
import type { Comparison } from "./compare.ts";

function pad(cells: string[][]): string {
  const widths = cells[0]!.map((_, c) => Math.max(...cells.map((row) => row[c]!.length)));
  return cells
    .map((row) =>
      row
        .map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!)))
        .join("  "),
    )
    .join("\n");
}

const usd = (x: number) => `$${x.toFixed(2)}`;
const dur = (s: number) =>
  s >= 3600 ? `${(s / 3600).toFixed(2)} h` : `${(s / 60).toFixed(1)} min`;

export function formatComparison(c: Comparison): string {
  const p = c.params;
  const rows = [
    [
      "policy",
      "cost",
      "×OD",
      "makespan",
      "×OD",
      "wasted rows",
      "reclaims",
      "fallbacks",
      "stragglers",
    ],
  ];
  for (const [name, f] of Object.entries(c.policies)) {
    rows.push([
      f.finished ? name : `${name} (unfinished)`,
      usd(f.cost_usd),
      f.cost_ratio_vs_on_demand.toFixed(3),
      dur(f.makespan_s),
      f.makespan_ratio_vs_on_demand.toFixed(3),
      f.wasted_rows.toLocaleString("en-US"),
      String(f.reclaims),
      String(f.fallback_instances),
      String(f.straggler_copies),
    ]);
  }
  const lines = [
    `simulated ${p.shards.toLocaleString("en-US")} shards × ${p.rowsPerShard} rows (${p.rowMs} ms a row), up to ${p.maxInstances.toLocaleString("en-US")} instances × ${p.shardsPerInstance} shards, spot at ${p.spotRatio}× on-demand, seed ${p.seed}`,
    c.interruptions,
    "",
    pad(rows),
    "",
    "goal:",
    ...c.goal.map((g) => `  ${g.met ? "met    " : "NOT met"}  ${g.text}: ${g.value}`),
    "",
    "quotas (shardfleet):",
    ...c.quotas.map(
      (q) =>
        `  ${q.ok ? "ok  " : "OVER"}  ${q.limit}: ${q.value.toLocaleString("en-US")} of ${q.max.toLocaleString("en-US")} — ${q.note}`,
    ),
  ];
  for (const [name, f] of Object.entries(c.policies)) {
    if (f.unfinished_reason) lines.push(`${name}: ${f.unfinished_reason}`);
  }
  return `${lines.join("\n")}\n`;
}

/** The `--json` object: parameters, the stated interruption scaling, per policy figures, goal, quotas. */
export function comparisonJson(c: Comparison): object {
  return {
    params: c.params,
    interruptions: c.interruptions,
    policies: c.policies,
    goal: c.goal,
    quotas: c.quotas,
  };
}
