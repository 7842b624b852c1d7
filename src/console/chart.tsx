/** A uPlot time-series chart that fits its container's width (360 px phones included). */
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";

export interface Series {
  label: string;
  values: number[];
  stroke: string;
  /** Step lines for counts (instances), straight for running sums (cost). */
  stepped?: boolean;
}

export function TimeChart(props: {
  title: string;
  x: number[];
  series: Series[];
  yLabel: string;
  /** Text for screen readers: what the chart shows, in words. */
  summary: string;
}) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el || props.x.length === 0) return;
    const width = () => Math.max(280, el.clientWidth);
    const plot = new uPlot(
      {
        width: width(),
        height: 220,
        scales: { x: { time: true } },
        axes: [{}, { label: props.yLabel, size: 60 }],
        series: [
          {},
          ...props.series.map((s) => ({
            label: s.label,
            stroke: s.stroke,
            width: 2,
            ...(s.stepped ? { paths: uPlot.paths.stepped?.({ align: 1 }) } : {}),
          })),
        ],
      },
      [props.x, ...props.series.map((s) => s.values)],
      el,
    );
    const observer = new ResizeObserver(() => plot.setSize({ width: width(), height: 220 }));
    observer.observe(el);
    return () => {
      observer.disconnect();
      plot.destroy();
    };
  }, [props.x, props.series, props.yLabel]);
  return (
    <figure class="chart">
      <figcaption>{props.title}</figcaption>
      <div ref={box} role="img" aria-label={props.summary} />
    </figure>
  );
}
