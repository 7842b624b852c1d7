/**
 * Tenant caps in the fleet policy: instances and hourly spend per tenant, within the fleet's own
 * caps. Pure: examples and properties over planFleet.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  fleetInstance,
  launchedCount,
  operationState,
  planPolicy,
} from "../../../../test/support/fleet.ts";
import type { Pool } from "../../../shared/capacity.ts";
import type {
  FleetDecision,
  FleetInstance,
  FleetPolicyOptions,
  OperationState,
} from "../policy.ts";

const POOLS: Pool[] = [
  { instanceType: "c7g.large", subnetId: "subnet-a" },
  { instanceType: "c7g.large", subnetId: "subnet-b" },
];

const op = (id: string, tenant: string | undefined, pendingShards: number): OperationState =>
  operationState(id, pendingShards, tenant === undefined ? {} : { tenant });

const inst = (id: string, operationId: string) => fleetInstance(id, { operationId });

const launched = (decisions: FleetDecision[], operationIds: readonly string[]) =>
  launchedCount(decisions, (d) => operationIds.includes(d.operationId));

const plan = (
  operations: OperationState[],
  instances: FleetInstance[],
  options: Partial<FleetPolicyOptions>,
) => planPolicy({ operations, instances }, { pools: POOLS, ...options });

describe("tenant caps", () => {
  it("hold a tenant's instances across its operations, and leave other tenants alone", () => {
    const { decisions } = plan(
      [op("op-a1", "acme", 20), op("op-a2", "acme", 20), op("op-g", "globex", 10)],
      [inst("i-1", "op-a1")],
      { tenantCaps: { acme: { maxInstances: 4 } } },
    );
    // acme has 1 live: 3 more across both of its operations; globex gets what its backlog needs.
    expect(launched(decisions, ["op-a1", "op-a2"])).toBe(3);
    expect(launched(decisions, ["op-g"])).toBe(5);
  });

  it("hold a tenant's hourly spend (a request priced at its dearest pool)", () => {
    const { decisions } = plan([op("op-a", "acme", 40)], [], {
      defaultTenantCaps: { maxHourlyUsd: 0.1 },
    });
    // Spot at $0.03/h: three fit under $0.10/h.
    expect(launched(decisions, ["op-a"])).toBe(3);
  });

  it("say which tenant's cap holds an operation back", () => {
    const { decisions, memory } = plan(
      [op("op-a", "acme", 10)],
      [inst("i-1", "op-a"), inst("i-2", "op-a")],
      { tenantCaps: { acme: { maxInstances: 2 } } },
    );
    expect(launched(decisions, ["op-a"])).toBe(0);
    expect(memory.operations["op-a"]?.blocked).toBe("tenant acme's max instances (2) reached");
  });

  it("the fleet's cap still holds above every tenant's", () => {
    const { decisions } = plan([op("op-a", "acme", 40)], [], {
      maxInstances: 5,
      tenantCaps: { acme: { maxInstances: 30 } },
    });
    expect(launched(decisions, ["op-a"])).toBe(5);
  });

  it("property: live plus launched never exceeds a tenant's caps; no caps changes nothing", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            tenant: fc.constantFrom("acme", "globex", undefined),
            pending: fc.integer({ min: 0, max: 30 }),
            live: fc.integer({ min: 0, max: 3 }),
          }),
          { minLength: 1, maxLength: 5 },
        ),
        fc.integer({ min: 0, max: 8 }),
        fc.option(fc.double({ min: 0.01, max: 0.5, noNaN: true }), { nil: undefined }),
        (ops, maxInstances, maxHourlyUsd) => {
          const operations = ops.map((o, n) => op(`op-${n}`, o.tenant, o.pending));
          const instances = ops.flatMap((o, n) =>
            Array.from({ length: o.live }, (_, k) => inst(`i-${n}-${k}`, `op-${n}`)),
          );
          const caps = {
            maxInstances,
            ...(maxHourlyUsd === undefined ? {} : { maxHourlyUsd }),
          };
          const { decisions } = plan(operations, instances, { tenantCaps: { acme: caps } });
          const acmeOps = operations.filter((o) => o.tenant === "acme").map((o) => o.id);
          const acmeLive = instances.filter(
            (i) => acmeOps.includes(i.operationId) && i.runningShards > 0,
          ).length;
          const added = launched(decisions, acmeOps);
          if (added > 0) {
            expect(acmeLive + added).toBeLessThanOrEqual(maxInstances);
            if (maxHourlyUsd !== undefined) {
              // Every request here is spot at $0.03/h (or on-demand at most $0.0725/h).
              expect((acmeLive + added) * 0.03).toBeLessThanOrEqual(maxHourlyUsd + 1e-9);
            }
          }
          // Without caps, tenants change nothing.
          const untagged = operations.map(({ tenant: _, ...o }) => o);
          expect(plan(operations, instances, {}).decisions).toEqual(
            plan(untagged, instances, {}).decisions,
          );
        },
      ),
    );
  });
});
