/**
 * An SVG chart of an operation's cost by market over time: cumulative USD per market, accruing
 * linearly within each price period of each instance (the report's `timeline`). Self-contained
 * SVG, no scripts or external references, so it is safe to open from a download.
 */
import type { CostReport } from "../../shared/schemas/cost.ts";
import { escapeXml } from "../../shared/xml.ts";

const W = 720;
const H = 360;
const PAD = { left: 70, right: 130, top: 30, bottom: 50 };
const COLORS: Record<string, string> = { spot: "#2a9d8f", "on-demand": "#e76f51" };

/** Cumulative cost of one market's periods at time t (linear within a period). */
function cumulativeAt(periods: readonly { from: number; to: number; usd: number }[], t: number) {
  let sum = 0;
  for (const p of periods) {
    if (t >= p.to) sum += p.usd;
    else if (t > p.from) sum += (p.usd * (t - p.from)) / (p.to - p.from);
  }
  return sum;
}

export function costChartSvg(r: CostReport): string {
  const periods = r.timeline.map((p) => ({
    market: p.market,
    from: Date.parse(p.from),
    to: Date.parse(p.to),
    usd: p.usd,
  }));
  const title = `Cost of ${r.operationId} by market over time (USD)`;
  const head = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">
<title>${escapeXml(title)}</title>
<rect width="${W}" height="${H}" fill="#fff"/>
<text x="${PAD.left}" y="18" font-size="14">${escapeXml(title)}</text>`;
  if (periods.length === 0) {
    return `${head}\n<text x="${PAD.left}" y="${H / 2}">no priced instance time</text>\n</svg>\n`;
  }
  const t0 = Math.min(...periods.map((p) => p.from));
  const t1 = Math.max(t0 + 1000, ...periods.map((p) => p.to));
  const times = [...new Set(periods.flatMap((p) => [p.from, p.to]))].sort((a, b) => a - b);
  const markets = [...new Set(periods.map((p) => p.market))].sort();
  const totals = markets.map((m) =>
    cumulativeAt(
      periods.filter((p) => p.market === m),
      t1,
    ),
  );
  const yMax = Math.max(...totals) || 1;
  const x = (t: number) => PAD.left + ((t - t0) / (t1 - t0)) * (W - PAD.left - PAD.right);
  const y = (usd: number) => H - PAD.bottom - (usd / yMax) * (H - PAD.top - PAD.bottom);
  const parts = [head];
  // Axes, with the end values as ticks: the reader wants totals and duration.
  parts.push(
    `<line x1="${PAD.left}" y1="${y(0)}" x2="${W - PAD.right}" y2="${y(0)}" stroke="#333"/>`,
    `<line x1="${PAD.left}" y1="${y(0)}" x2="${PAD.left}" y2="${PAD.top}" stroke="#333"/>`,
    `<text x="${PAD.left - 6}" y="${y(0) + 4}" text-anchor="end">$0</text>`,
    `<text x="${PAD.left - 6}" y="${y(yMax) + 4}" text-anchor="end">$${yMax.toPrecision(3)}</text>`,
    `<text x="${PAD.left}" y="${H - PAD.bottom + 18}">${escapeXml(new Date(t0).toISOString())}</text>`,
    `<text x="${W - PAD.right}" y="${H - PAD.bottom + 34}" text-anchor="end">+${Math.round((t1 - t0) / 1000)} s</text>`,
  );
  markets.forEach((m, i) => {
    const mine = periods.filter((p) => p.market === m);
    const points = times.map((t) => `${x(t).toFixed(1)},${y(cumulativeAt(mine, t)).toFixed(1)}`);
    const color = COLORS[m] ?? "#555";
    parts.push(
      `<polyline fill="none" stroke="${color}" stroke-width="2" points="${points.join(" ")}"><title>${escapeXml(m)}</title></polyline>`,
      `<rect x="${W - PAD.right + 12}" y="${PAD.top + i * 20}" width="12" height="12" fill="${color}"/>`,
      `<text x="${W - PAD.right + 30}" y="${PAD.top + i * 20 + 10}">${escapeXml(m)} $${(totals[i] ?? 0).toPrecision(3)}</text>`,
    );
  });
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}
