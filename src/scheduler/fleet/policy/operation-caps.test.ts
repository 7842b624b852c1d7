/**
 * An operation's own caps (PATCH /operations/:id) in the fleet policy: instances and hourly spend
 * per operation, within the fleet's caps. Pure: examples and a property over planFleet.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  fleetInstance,
  launchedCount,
  operationState,
  planPolicy,
} from "../../../../test/support/fleet.ts";
import type { FleetDecision, FleetInstance, OperationState } from "../policy.ts";

const op = (id: string, pendingShards: number, caps?: OperationState["caps"]): OperationState =>
  operationState(id, pendingShards, caps ? { caps } : {});

const inst = (id: string, operationId: string) => fleetInstance(id, { operationId });

const launched = (decisions: FleetDecision[], operationId: string) =>
  launchedCount(decisions, (d) => d.operationId === operationId);

const plan = (operations: OperationState[], instances: FleetInstance[], maxInstances = 50) =>
  planPolicy({ operations, instances }, { maxInstances });

describe("operation caps", () => {
  it("hold one operation's instances and leave the others alone", () => {
    const { decisions } = plan(
      [op("op-a", 40, { maxInstances: 3 }), op("op-b", 10)],
      [inst("i-1", "op-a")],
    );
    expect(launched(decisions, "op-a")).toBe(2);
    expect(launched(decisions, "op-b")).toBe(5);
  });

  it("raising the cap launches more on the next plan", () => {
    const live = [inst("i-1", "op-a"), inst("i-2", "op-a")];
    const before = plan([op("op-a", 40, { maxInstances: 2 })], live);
    expect(launched(before.decisions, "op-a")).toBe(0);
    const after = plan([op("op-a", 40, { maxInstances: 8 })], live);
    expect(launched(after.decisions, "op-a")).toBe(6);
  });

  it("hold the operation's hourly spend, and say that it holds the operation back", () => {
    const { decisions, memory } = plan([op("op-a", 40, { maxHourlyUsd: 0.1 })], []);
    // Spot at $0.03/h: three fit under $0.10/h.
    expect(launched(decisions, "op-a")).toBe(3);
    const full = plan([op("op-a", 40, { maxHourlyUsd: 0.05 })], [inst("i-1", "op-a")]);
    expect(launched(full.decisions, "op-a")).toBe(0);
    expect(full.memory.operations["op-a"]?.blocked).toMatch(/operation's hourly budget/);
    expect(memory.operations["op-a"]?.blocked).toBeUndefined();
  });

  it("the fleet's cap still holds above an operation's", () => {
    const { decisions } = plan([op("op-a", 40, { maxInstances: 30 })], [], 5);
    expect(launched(decisions, "op-a")).toBe(5);
  });

  it("property: live plus launched never exceeds the operation's instance cap", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 12 }),
        fc.integer({ min: 0, max: 6 }),
        fc.integer({ min: 1, max: 200 }),
        (cap, live, pending) => {
          const instances = Array.from({ length: live }, (_, n) => inst(`i-${n}`, "op-a"));
          const { decisions } = plan([op("op-a", pending, { maxInstances: cap })], instances);
          const total = live + launched(decisions, "op-a");
          expect(total).toBeLessThanOrEqual(Math.max(cap, live));
        },
      ),
    );
  });
});
