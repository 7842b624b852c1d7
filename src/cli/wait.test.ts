import { describe, expect, it } from "vitest";
import { operationView } from "../../test/support/views.ts";
import type { OperationView } from "./api-client.ts";
import { summarize } from "./wait.ts";

const view: OperationView = operationView({
  rows: { total: 10, done: 4, failed: 0 },
  shards: { total: 2, done: 1, failed: 0, running: 1, pending: 0 },
  createdAt: "2026-11-23T10:00:00.000Z",
  startedAt: "2026-11-23T10:00:01.000Z",
  instances: [
    {
      id: "i-warned",
      market: "spot",
      type: "c7g.large",
      role: "worker",
      state: "running",
      since: "2026-11-23T10:00:05.000Z",
      launchedAt: "2026-11-23T10:00:05.000Z",
      interruptionWarnedAt: "2026-11-23T10:01:02.000Z",
      rebalanceRecommendedAt: "2026-11-23T10:00:40.000Z",
    },
    {
      id: "i-risky",
      market: "spot",
      type: "c7g.large",
      role: "worker",
      state: "running",
      since: "2026-11-23T10:00:05.000Z",
      launchedAt: "2026-11-23T10:00:05.000Z",
      rebalanceRecommendedAt: "2026-11-23T10:00:50.000Z",
    },
    {
      id: "i-calm",
      market: "on-demand",
      type: "c7g.large",
      role: "worker",
      state: "running",
      since: "2026-11-23T10:01:03.000Z",
      launchedAt: "2026-11-23T10:01:03.000Z",
    },
  ],
});

describe("summarize", () => {
  it("shows what EventBridge said of each instance, a warning before a recommendation", () => {
    const lines = summarize(view).split("\n");
    const row = (id: string) => lines.find((l) => l.includes(id)) ?? "";
    expect(lines.some((l) => /ID\s+MARKET.*SPOT SIGNAL/.test(l))).toBe(true);
    expect(row("i-warned")).toMatch(/interruption warned 10:01:02$/);
    expect(row("i-risky")).toMatch(/rebalance recommended 10:00:50$/);
    expect(row("i-calm")).toMatch(/10:01:03$/);
  });

  it("leaves the SPOT SIGNAL column out when no instance has one", () => {
    const calm = { ...view, instances: view.instances!.filter((i) => i.id === "i-calm") };
    const text = summarize(calm);
    expect(text).toMatch(/ID\s+MARKET\s+ROLE\s+TYPE\s+STATE\s+SINCE\n/);
    expect(text).not.toMatch(/SPOT SIGNAL/);
  });
});
