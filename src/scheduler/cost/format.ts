/** The cost report flattened for downloads (the API's CSV and xlsx). */
import { lowerBoundNote } from "../../shared/cost-format.ts";
import type { CostReport } from "../../shared/schemas/cost.ts";

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
      `${r.wasted.rowsRedone} rows redone; ${r.wasted.losingCopies} losing copies${lowerBoundNote(r.wasted.uncountedAttempts)}`,
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
