import { describe, expect, it } from "vitest";
import { operationView } from "../../test/support/views.ts";
import type { OperationView } from "./api-client.ts";
import { barSource, summarize } from "./wait.ts";

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

  it("shows what the source sees, per origin, against the budget when there is one", () => {
    const origin = {
      workers: 4,
      concurrency: 36,
      inFlight: 20,
      requests: 1200,
      throttled: 3,
      failed: 1,
    };
    const text = summarize({
      ...view,
      task: "http-enrich",
      source: [
        { ...origin, origin: "https://a.example", requestsPerSecond: 49.5, budget: 50 },
        { ...origin, origin: "https://b.example", requestsPerSecond: 80, budget: null },
      ],
    });
    expect(text).toContain(
      "source https://a.example: 49.5 req/s (budget 50/s), 4 workers, concurrency 36 (20 in flight), 3 × 429, 1 failed of 1200",
    );
    expect(text).toContain("source https://b.example: 80 req/s (no budget)");
  });

  it("adds the latency and the instances the budget keeps busy, and a short note for the progress bar", () => {
    const origin = {
      origin: "https://a.example",
      workers: 4,
      requestsPerSecond: 49.5,
      budget: 50,
      concurrency: 36,
      inFlight: 20,
      requests: 1200,
      throttled: 3,
      failed: 1,
      latencyMs: 120,
      instances: 1,
    };
    expect(summarize({ ...view, task: "http-enrich", source: [origin] })).toContain(
      "source https://a.example: 49.5 req/s (budget 50/s), 4 workers, concurrency 36 (20 in flight), 3 × 429, 1 failed of 1200, latency 120 ms; the budget keeps 1 instance(s) busy",
    );
    expect(barSource({ source: [origin] })).toBe(" | 49.5 of 50 req/s, concurrency 36, 3 × 429");
    expect(barSource({ source: [{ ...origin, budget: null }] })).toBe(
      " | 49.5 req/s, concurrency 36, 3 × 429",
    );
    expect(barSource({})).toBe("");
  });
});
