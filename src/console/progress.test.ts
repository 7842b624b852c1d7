import { describe, expect, it } from "vitest";
import type { OperationInstanceView } from "../shared/contracts/operations.ts";
import { actionsFor } from "./actions.ts";
import { cumulativeCost, etaSeconds, instancesOverTime, rowsPerSecond } from "./progress.ts";

describe("rows a second and the time left", () => {
  it("come from the samples of the recent window", () => {
    const samples = [
      { at: 0, done: 0 },
      { at: 40_000, done: 400 },
      { at: 50_000, done: 600 },
      { at: 70_000, done: 1000 },
    ];
    // The last 30 s: 50 s → 70 s, 400 rows.
    expect(rowsPerSecond(samples)).toBe(20);
    expect(etaSeconds(2000, 1000, 20)).toBe(50);
  });

  it("are unknown until two samples span time, or without a total", () => {
    expect(rowsPerSecond([])).toBeNull();
    expect(rowsPerSecond([{ at: 1000, done: 5 }])).toBeNull();
    expect(etaSeconds(null, 10, 5)).toBeNull();
    expect(etaSeconds(100, 10, 0)).toBeNull();
    expect(etaSeconds(100, 10, null)).toBeNull();
  });
});

const instance = (
  id: string,
  market: "spot" | "on-demand",
  launchedAt: string,
  state: OperationInstanceView["state"],
  since: string,
): OperationInstanceView => ({
  id,
  market,
  type: "local.small",
  role: "worker",
  state,
  launchedAt,
  since,
});

describe("instances by market over time", () => {
  it("steps up at each launch and down at each end, and runs to now", () => {
    const t = (s: number) => new Date(Date.UTC(2030, 0, 1, 0, 0, s)).toISOString();
    const series = instancesOverTime(
      [
        instance("a", "spot", t(0), "terminated", t(30)),
        instance("b", "spot", t(10), "running", t(11)),
        instance("c", "on-demand", t(10), "running", t(12)),
      ],
      Date.parse(t(40)),
    );
    const x = (s: number) => Date.parse(t(s)) / 1000;
    expect(series).toEqual({
      x: [x(0), x(10), x(30), x(40)],
      spot: [1, 2, 1, 1],
      onDemand: [0, 1, 1, 1],
    });
  });

  it("is empty without instances", () => {
    expect(instancesOverTime([], Date.now())).toEqual({ x: [], spot: [], onDemand: [] });
  });
});

describe("cumulative cost", () => {
  it("accrues each period linearly, and spreads the all-on-demand figure like the spend", () => {
    const t = (s: number) => new Date(Date.UTC(2030, 0, 1, 0, 0, s)).toISOString();
    const c = cumulativeCost(
      [
        { market: "spot", from: t(0), to: t(60), usd: 0.03 },
        { market: "on-demand", from: t(30), to: t(60), usd: 0.1 },
      ],
      0.13,
      0.26,
    );
    expect(c.x).toEqual([0, 30, 60].map((s) => Date.parse(t(s)) / 1000));
    expect(c.spot).toEqual([0, 0.015, 0.03]);
    expect(c.onDemand).toEqual([0, 0, 0.1]);
    expect(c.counterfactual[2]).toBeCloseTo(0.26);
    expect(c.counterfactual[1]).toBeCloseTo(0.03);
  });
});

describe("actions by status", () => {
  it("offer what the lifecycle allows, and retry only for operations that ended with failures", () => {
    expect(actionsFor("running")).toEqual(["pause", "cancel"]);
    expect(actionsFor("paused")).toEqual(["resume", "cancel"]);
    expect(actionsFor("queued")).toEqual(["cancel"]);
    expect(actionsFor("succeeded-with-failures")).toEqual(["retry"]);
    expect(actionsFor("failed")).toEqual(["retry"]);
    expect(actionsFor("succeeded")).toEqual([]);
    expect(actionsFor("cancelled")).toEqual([]);
  });
});
