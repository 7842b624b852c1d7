import { describe, expect, it } from "vitest";
import { lineChartSvg } from "./chart.ts";

describe("lineChartSvg", () => {
  it("draws one polyline per series, skips gaps, and escapes text", () => {
    const svg = lineChartSvg({
      title: "cost <ratio> & band",
      xLabel: "band",
      yLabel: "× on-demand",
      x: ["<5", "5-10", ">20"],
      series: [
        { name: "a", values: [0.3, 0.31, 0.35] },
        { name: "b", values: [0.3, Number.NaN, 0.5] },
      ],
      reference: { y: 1, label: "all-on-demand" },
    });
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg.match(/<polyline/g)).toHaveLength(2);
    expect(svg.match(/<circle/g)).toHaveLength(5);
    expect(svg).toContain("cost &lt;ratio&gt; &amp; band");
    expect(svg).toContain("&lt;5");
    expect(svg).not.toContain("<script");
  });
});
