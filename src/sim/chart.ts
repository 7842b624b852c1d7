/**
 * A small SVG line chart for the simulation docs (x: a swept parameter, y: a ratio or count),
 * in the look of the cost report's chart (src/scheduler/cost/chart.ts): self-contained SVG, no
 * scripts or external references. Pure: series in, SVG text out.
 */
import { escapeXml } from "../shared/xml.ts";

const W = 720;
const H = 360;
const PAD = { left: 70, right: 190, top: 36, bottom: 56 };
const PALETTE = ["#2a9d8f", "#e76f51", "#264653", "#e9c46a", "#8d5a97", "#6c757d"];

export interface Series {
  name: string;
  /** One y per x label; NaN leaves a gap. */
  values: readonly number[];
}

export interface LineChart {
  title: string;
  xLabel: string;
  yLabel: string;
  /** Category labels along x, evenly spaced. */
  x: readonly string[];
  series: readonly Series[];
  /** A dashed reference line (e.g. 1.0 = all-on-demand). */
  reference?: { y: number; label: string };
}

const fmt = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3));

export function lineChartSvg(c: LineChart): string {
  const all = c.series.flatMap((s) => s.values.filter(Number.isFinite));
  if (c.reference) all.push(c.reference.y);
  const yMax = Math.max(...all, 0) * 1.08 || 1;
  const step = c.x.length > 1 ? (W - PAD.left - PAD.right) / (c.x.length - 1) : 0;
  const x = (i: number) => PAD.left + i * step;
  const y = (v: number) => H - PAD.bottom - (v / yMax) * (H - PAD.top - PAD.bottom);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<title>${escapeXml(c.title)}</title>`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${PAD.left}" y="20" font-size="14">${escapeXml(c.title)}</text>`,
    `<line x1="${PAD.left}" y1="${y(0)}" x2="${W - PAD.right}" y2="${y(0)}" stroke="#333"/>`,
    `<line x1="${PAD.left}" y1="${y(0)}" x2="${PAD.left}" y2="${PAD.top}" stroke="#333"/>`,
  ];
  for (const v of [0, yMax / 2, yMax]) {
    parts.push(`<text x="${PAD.left - 6}" y="${y(v) + 4}" text-anchor="end">${fmt(v)}</text>`);
  }
  c.x.forEach((label, i) => {
    parts.push(
      `<text x="${x(i)}" y="${H - PAD.bottom + 16}" text-anchor="middle">${escapeXml(label)}</text>`,
    );
  });
  parts.push(
    `<text x="${(PAD.left + W - PAD.right) / 2}" y="${H - 14}" text-anchor="middle">${escapeXml(c.xLabel)}</text>`,
    `<text x="16" y="${(PAD.top + H - PAD.bottom) / 2}" transform="rotate(-90 16 ${(PAD.top + H - PAD.bottom) / 2})" text-anchor="middle">${escapeXml(c.yLabel)}</text>`,
  );
  if (c.reference) {
    const ry = y(c.reference.y);
    parts.push(
      `<line x1="${PAD.left}" y1="${ry}" x2="${W - PAD.right}" y2="${ry}" stroke="#999" stroke-dasharray="4 4"/>`,
      `<text x="${W - PAD.right + 4}" y="${ry + 4}" fill="#666">${escapeXml(c.reference.label)}</text>`,
    );
  }
  c.series.forEach((s, k) => {
    const color = PALETTE[k % PALETTE.length]!;
    const points = s.values
      .map((v, i) => (Number.isFinite(v) ? `${x(i).toFixed(1)},${y(v).toFixed(1)}` : ""))
      .filter((p) => p !== "");
    parts.push(
      `<polyline fill="none" stroke="${color}" stroke-width="2" points="${points.join(" ")}"><title>${escapeXml(s.name)}</title></polyline>`,
      ...points.map((p) => {
        const [px, py] = p.split(",");
        return `<circle cx="${px}" cy="${py}" r="3" fill="${color}"/>`;
      }),
      `<rect x="${W - PAD.right + 12}" y="${PAD.top + 20 + k * 20}" width="12" height="12" fill="${color}"/>`,
      `<text x="${W - PAD.right + 30}" y="${PAD.top + 30 + k * 20}">${escapeXml(s.name)}</text>`,
    );
  });
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}
