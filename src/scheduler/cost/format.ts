/** A cost report as a plain-text table (the CLI's `shardfleet cost ID`, the demo's last words). */
import type { CostReport } from "../../shared/schemas/cost.ts";

const usd = (x: number) => `$${x.toFixed(x !== 0 && Math.abs(x) < 0.01 ? 6 : 4)}`;
const pct = (x: number | null) => (x === null ? "n/a" : `${x.toFixed(1)}%`);

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
        `${r.wasted.rowsRedone} rows redone, ${r.wasted.losingCopies} losing copies, ${pct(r.wasted.percentOfTotal)}`,
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

/** One line of the report's flat form (CSV, xlsx): what, of what, how much, in what. */
export interface CostLine {
  kind: string;
  name: string;
  value: number | null;
  unit: "USD" | "%" | "rows" | "rows/USD" | "s" | "";
  detail: string;
}

/** The report flattened to lines: summary first, then one line per instance. */
export function costLines(r: CostReport): CostLine[] {
  const line = (
    kind: string,
    name: string,
    value: number | null,
    unit: CostLine["unit"],
    detail = "",
  ): CostLine => ({ kind, name, value, unit, detail });
  return [
    line("total", r.operationId, r.totalUsd, "USD", r.provisional ? "provisional" : ""),
    line("work", "", r.workUsd, "USD"),
    line("idle", "", r.idleUsd, "USD"),
    ...r.byMarket.map((m) => line("market", m.market, m.usd, "USD", `${m.instances} instances`)),
    ...r.byInstanceType.map((t) =>
      line("instance-type", t.instanceType, t.usd, "USD", `${t.instances} instances`),
    ),
    line(
      "wasted",
      "",
      r.wasted.usd,
      "USD",
      `${r.wasted.rowsRedone} rows redone; ${r.wasted.losingCopies} losing copies`,
    ),
    line("all-on-demand", "", r.onDemandCounterfactualUsd, "USD"),
    line("saving", "", r.savingPercent, "%"),
    line("rows", "", r.rows, "rows"),
    line("rows-per-dollar", "", r.rowsPerDollar, "rows/USD"),
    ...r.instances.map((i) =>
      line(
        "instance",
        i.id,
        i.workUsd + i.idleUsd,
        "USD",
        `${i.market} ${i.instanceType}${i.availabilityZone ? ` ${i.availabilityZone}` : ""}; billed ${i.billedSeconds} s for $${i.instanceUsd}; work $${i.workUsd}, idle $${i.idleUsd}, other operations $${i.otherOperationsUsd}`,
      ),
    ),
    ...r.unpricedInstances.map((id) => line("unpriced-instance", id, null, "")),
  ];
}

/** RFC 4180 field: quoted when it holds a comma, quote or line break. */
function csvField(v: string | number | null): string {
  const s = v === null ? "" : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

export function costCsv(r: CostReport): string {
  const rows = [
    "kind,name,value,unit,detail",
    ...costLines(r).map((l) => [l.kind, l.name, l.value, l.unit, l.detail].map(csvField).join(",")),
  ];
  return `${rows.join("\r\n")}\r\n`;
}
