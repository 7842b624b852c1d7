/** The Grafana dashboard in docs/ graphs only series the scheduler exports (no drift). */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { systemClock } from "../../shared/clock.ts";
import { silentLogger } from "../../shared/logger.ts";
import type { ObjectStore } from "../../shared/object-store.ts";
import { SchedulerMetrics } from "./metrics.ts";

describe("docs/grafana-dashboard.json", () => {
  it("every shardfleet_* series a panel queries is one /metrics exports", async () => {
    const dashboard = JSON.parse(
      readFileSync(new URL("../../../docs/grafana-dashboard.json", import.meta.url), "utf8"),
    ) as { panels: Array<{ title: string; targets: Array<{ expr: string }> }> };
    const metrics = new SchedulerMetrics({
      store: {} as ObjectStore,
      clock: systemClock,
      logger: silentLogger(),
    });
    const exported = new Set<string>();
    for (const m of await metrics.registry.getMetricsAsJSON()) {
      exported.add(m.name);
      if (String(m.type) === "histogram")
        for (const s of ["_bucket", "_sum", "_count"]) exported.add(m.name + s);
    }
    expect(dashboard.panels.length).toBeGreaterThanOrEqual(10);
    for (const panel of dashboard.panels) {
      const used = panel.targets.flatMap((t) => t.expr.match(/shardfleet_[a-z_]+/g) ?? []);
      expect(used.length, panel.title).toBeGreaterThan(0);
      for (const name of used) expect(exported.has(name), `${panel.title}: ${name}`).toBe(true);
    }
  });
});
