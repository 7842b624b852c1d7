/**
 * The fleet sized to what the source accepts (issue 18 item 3): the source cap alone, and in
 * planFleet (launches held back, one event when it starts holding). Pure.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  fleetInstance,
  launchedCount,
  operationState,
  planPolicy,
} from "../../../../test/support/fleet.ts";
import {
  emptyFleetMemory,
  type FleetDecision,
  type FleetInstance,
  type FleetMemory,
  type OperationState,
} from "../policy.ts";
import { type SourceBudget, sourceCap, UNMEASURED_INSTANCES } from "./source-cap.ts";

const ORIGIN = "https://registry.example";

const measured = (concurrency: number, latencyMs: number, origin = ORIGIN) => ({
  origin,
  concurrency,
  latencyMs,
});

const op = (pendingShards: number, source?: SourceBudget): OperationState =>
  operationState("op-1", pendingShards, source ? { source } : {});

const launched = (decisions: FleetDecision[]) =>
  launchedCount(decisions, (d) => d.role === "worker");

const limitedEvents = (decisions: FleetDecision[]) =>
  decisions.filter((d) => d.type === "sourceLimited");

const plan = (
  operation: OperationState,
  instances: FleetInstance[] = [],
  memory: FleetMemory = emptyFleetMemory(),
) => planPolicy({ operations: [operation], instances, memory });

describe("sourceCap: instances a request budget keeps busy", () => {
  it("is ⌈budget ÷ (concurrency ÷ latency)⌉ of the median worker, at least 1", () => {
    // 10 in flight at 100 ms: one instance sends up to 100 requests a second.
    expect(sourceCap({ requestsPerSecond: 50, measured: [measured(10, 100)] })).toMatchObject({
      instances: 1,
      measured: true,
    });
    expect(sourceCap({ requestsPerSecond: 450, measured: [measured(10, 100)] }).instances).toBe(5);
    // The median worker decides: a fresh one still ramping its concurrency does not.
    const three = [measured(2, 100), measured(10, 100), measured(12, 100)];
    expect(sourceCap({ requestsPerSecond: 1000, measured: three }).instances).toBe(10);
    // A very slow source needs many instances for a small budget.
    expect(sourceCap({ requestsPerSecond: 20, measured: [measured(8, 2000)] }).instances).toBe(5);
  });

  it("takes the origin that needs the most instances", () => {
    const cap = sourceCap({
      requestsPerSecond: 100,
      measured: [measured(10, 10, "https://a.example"), measured(10, 500, "https://b.example")],
    });
    expect(cap.instances).toBe(5);
    expect(cap.reason).toContain("https://b.example");
  });

  it("is one batch before any worker measured the source", () => {
    for (const m of [[], [measured(0, 100)], [measured(5, Number.NaN)]]) {
      expect(sourceCap({ requestsPerSecond: 10, measured: m })).toMatchObject({
        instances: UNMEASURED_INSTANCES,
        measured: false,
      });
    }
  });
});

describe("planFleet with a request budget", () => {
  it("launches no more workers than the budget keeps busy, and says so once", () => {
    const budget = { requestsPerSecond: 150, measured: [measured(10, 100)] };
    // 40 pending shards call for 20 instances; the budget keeps 2 busy. Not rounded up to a
    // batch of five: the source cap is a cap.
    const first = plan(op(40, budget));
    expect(launched(first.decisions)).toBe(2);
    const [event] = limitedEvents(first.decisions);
    expect(event).toMatchObject({ type: "sourceLimited", operationId: "op-1", instances: 2 });
    expect(event?.type === "sourceLimited" && event.reason).toMatch(
      /request budget 150\/s keeps 2 instance\(s\) busy: one sends up to 100\/s/,
    );
    const launch = first.decisions.find((d) => d.type === "launch");
    expect(launch?.type === "launch" && launch.reason).toMatch(
      /backlog 40 shards → 20 instance\(s\), the request budget keeps 2 busy, 0 live/,
    );
    // The next plan, with them live: nothing launched, and no second event.
    const second = plan(op(40, budget), [fleetInstance("i-1"), fleetInstance("i-2")], first.memory);
    expect(launched(second.decisions)).toBe(0);
    expect(limitedEvents(second.decisions)).toEqual([]);
  });

  it("before a measurement launches one batch, and says so again once measured", () => {
    const first = plan(op(40, { requestsPerSecond: 150, measured: [] }));
    expect(launched(first.decisions)).toBe(UNMEASURED_INSTANCES);
    expect(limitedEvents(first.decisions)).toHaveLength(1);
    const live = Array.from({ length: UNMEASURED_INSTANCES }, (_, k) => fleetInstance(`i-${k}`));
    const unchanged = plan(op(40, { requestsPerSecond: 150, measured: [] }), live, first.memory);
    expect(limitedEvents(unchanged.decisions)).toEqual([]);
    // Measured: slow answers, so the budget keeps more busy than the first batch.
    const slow = { requestsPerSecond: 150, measured: [measured(10, 1000)] };
    const next = plan(op(40, slow), live, unchanged.memory);
    expect(launched(next.decisions)).toBe(15 - UNMEASURED_INSTANCES);
    expect(limitedEvents(next.decisions)).toMatchObject([{ instances: 15 }]);
    // The records lapse for a pass (workers between shards) and come back: no more events.
    const lapsed = plan(op(40, { requestsPerSecond: 150, measured: [] }), live, next.memory);
    const back = plan(op(40, slow), live, lapsed.memory);
    expect([...limitedEvents(lapsed.decisions), ...limitedEvents(back.decisions)]).toEqual([]);
  });

  it("says nothing when the backlog needs fewer than the budget keeps busy", () => {
    const { decisions, memory } = plan(op(4, { requestsPerSecond: 1000, measured: [] }));
    expect(launched(decisions)).toBe(5); // 2 needed, rounded up to a batch within the cap of 6
    expect(limitedEvents(decisions)).toEqual([]);
    expect(memory.operations["op-1"]?.sourceLimit).toBeUndefined();
  });

  it("without a budget sizes from the backlog alone, as before", () => {
    expect(launched(plan(op(40)).decisions)).toBe(20);
  });

  it("property: live + launched workers never exceed what the budget keeps busy (or what was live)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 200 }),
        fc.integer({ min: 1, max: 5000 }),
        fc.array(
          fc.record({ concurrency: fc.integer({ min: 0, max: 200 }), latencyMs: fc.nat(5000) }),
          { maxLength: 6 },
        ),
        fc.integer({ min: 0, max: 12 }),
        (pending, rps, workers, liveCount) => {
          const budget = {
            requestsPerSecond: rps,
            measured: workers.map((w) => measured(w.concurrency, w.latencyMs)),
          };
          const live = Array.from({ length: liveCount }, (_, k) => fleetInstance(`i-${k}`));
          const { decisions } = plan(op(pending, budget), live);
          const cap = sourceCap(budget).instances;
          expect(cap).toBeGreaterThanOrEqual(1);
          expect(liveCount + launched(decisions)).toBeLessThanOrEqual(Math.max(liveCount, cap));
          expect(limitedEvents(decisions).length).toBeLessThanOrEqual(1);
        },
      ),
    );
  });
});
