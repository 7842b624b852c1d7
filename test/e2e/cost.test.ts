/**
 * The cost report of a real local run that had a spot reclaim and a fallback to on-demand: the
 * fleet manager launches spot, one spot instance is reclaimed without notice while spot capacity
 * is gone, its replacement comes on-demand, and the report prices both markets, adds up, and
 * compares with the all-on-demand counterfactual.
 */
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitForOperation } from "../../src/cli/wait.ts";
import { writeCustomersWorkbook } from "../../src/demo/customers.ts";
import { demoSpec } from "../../src/demo/run-demo.ts";
import { startTaxRegistry, type TaxRegistry } from "../../src/demo/tax-registry.ts";
import { costReportSchema } from "../../src/shared/schemas/cost.ts";
import { startTestStack, type TestStack } from "../support/local-stack.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("cost report of a local run with a reclaim and a fallback", () => {
  let registry: TaxRegistry;
  let env: TestStack;

  beforeAll(async () => {
    registry = await startTaxRegistry({ failureRate: 0 });
    env = await startTestStack("cost", {
      capacity: "fleet",
      maxInstances: 3,
      egressAllow: [new URL(registry.url).host],
    });
  }, 60_000);

  afterAll(async () => {
    await env?.close();
    await registry?.close();
  }, 60_000);

  it("prices spot and on-demand, adds up, and beats all-on-demand", async () => {
    const { dir, stack, client } = env;
    const input = path.join(dir, "customers.xlsx");
    await writeCustomersWorkbook(input, 3_000);
    const base = demoSpec(registry.url);
    const { id } = await client.submit(input, {
      ...base,
      task: { ...base.task, options: { ...base.task.options, concurrency: 4 } },
      shardSize: 150,
    });

    // Spot runs first; then spot capacity goes away and one spot instance is taken.
    for (let waited = 0; stack.liveInstances().length === 0; waited += 100) {
      if (waited > 30_000) throw new Error("no instance was launched");
      await sleep(100);
    }
    await sleep(1_500);
    stack.localEc2!.setSpotCapacity(false);
    const victim = stack.liveInstances().find((i) => i.market === "spot")!;
    victim.reclaim(false);

    const view = await waitForOperation(client, id, { progress: false, intervalMs: 250 });
    expect(view.status).toBe("succeeded");
    const final = await client.get(id);
    const kinds = (final.events ?? []).map((e) => e.kind);
    expect(kinds).toContain("capacity-error");
    expect(kinds).toContain("fallback-on-demand");

    const report = costReportSchema.parse(await client.cost(id));
    expect(report.rows).toBe(3_000);
    const market = Object.fromEntries(report.byMarket.map((m) => [m.market, m]));
    expect(market.spot?.usd).toBeGreaterThan(0);
    expect(market["on-demand"]?.usd).toBeGreaterThan(0);
    expect(report.instances.map((i) => i.id)).toContain(victim.name);
    // The parts add up to the whole, every way it is cut (figures are rounded to nano-dollars).
    expect(report.workUsd + report.idleUsd).toBeCloseTo(report.totalUsd, 7);
    expect(report.byMarket.reduce((a, m) => a + m.usd, 0)).toBeCloseTo(report.totalUsd, 7);
    expect(report.byInstanceType.reduce((a, t) => a + t.usd, 0)).toBeCloseTo(report.totalUsd, 7);
    // Spot was used, so all-on-demand would have cost more.
    expect(report.onDemandCounterfactualUsd).toBeGreaterThan(report.totalUsd);
    expect(report.savingPercent).toBeGreaterThan(0);
    expect(report.savingPercent).toBeLessThan(100);
    expect(report.unpricedInstances).toEqual([]);
  }, 180_000);
});
