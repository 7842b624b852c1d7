/**
 * Cost reports from a synthetic ledger — fleet records, attempts and commit markers written to
 * the real local S3 server — and the `GET /operations/:id/cost` route.
 */
import ExcelJS from "exceljs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { transformSpec } from "../../../test/support/api.ts";
import { type LocalAws, startLocalAws } from "../../../test/support/local-aws.ts";
import { seedManifest } from "../../../test/support/seed-manifest.ts";
import { systemClock } from "../../shared/clock.ts";
import { keys } from "../../shared/keys.ts";
import { silentLogger } from "../../shared/logger.ts";
import { costReportSchema } from "../../shared/schemas/cost.ts";
import { type FleetRecord, fleetRecordSchema } from "../../shared/schemas/fleet.ts";
import { type Manifest, parseOperationSpec } from "../../shared/schemas/operation.ts";
import { type Attempt, attemptSchema, shardDoneSchema } from "../../shared/schemas/shard.ts";
import { buildApp } from "../api/app.ts";
import { OperationService } from "../operations.ts";
import { CostService } from "./cost-service.ts";
import { TablePriceSource } from "./price-source.ts";

let env: LocalAws;
beforeAll(async () => {
  env = await startLocalAws("cost-test");
  await seedLedger();
});
afterAll(async () => {
  await env?.close();
});

// Whole seconds, two hours ago: every instance has ended by "now".
const T0 = Math.floor((Date.now() - 2 * 3_600_000) / 1000) * 1000;
const at = (s: number) => new Date(T0 + s * 1000).toISOString();

async function manifest(id: string, status: Manifest["status"], from: number, to?: number) {
  const m: Manifest = {
    v: 1,
    id,
    status,
    spec: parseOperationSpec(transformSpec()),
    input: { key: keys.input(id, "csv"), filename: "x.csv", format: "csv", bytes: 1 },
    headers: ["name"],
    rows: 20,
    shards: [
      { id: "s000000", start: 0, end: 10 },
      { id: "s000001", start: 10, end: 20 },
    ],
    createdAt: at(from),
    updatedAt: at(from),
    ...(to === undefined ? {} : { finishedAt: at(to) }),
  } as Manifest;
  await seedManifest({ store: env.store, clock: systemClock }, m);
}

async function fleet(op: string, instances: FleetRecord["instances"]) {
  await env.store.putJson(keys.fleet(op), fleetRecordSchema, {
    v: 1,
    operationId: op,
    instances,
    events: [],
    droppedEvents: 0,
    updatedAt: at(0),
  });
}

function instance(
  id: string,
  market: "spot" | "on-demand",
  from: number,
  to: number,
): FleetRecord["instances"][number] {
  return {
    id,
    market,
    type: "local.small",
    role: "worker",
    availabilityZone: "local-1a",
    state: "terminated",
    launchedAt: at(from),
    since: at(to),
    endReason: "test",
  };
}

async function attempt(
  op: string,
  shardId: string,
  attemptId: string,
  instanceId: string,
  from: number,
  to: number,
  rowsDone: number,
  cause: Attempt["cause"],
) {
  await env.store.putJson(keys.attempt(op, shardId, attemptId), attemptSchema, {
    v: 1,
    attemptId,
    operationId: op,
    shardId,
    instanceId,
    market: "spot",
    startedAt: at(from),
    endedAt: at(to),
    rowsDone,
    cause,
  });
}

async function done(op: string, shardId: string, attemptId: string, instanceId: string) {
  await env.store.putJson(keys.done(op, shardId), shardDoneSchema, {
    v: 1,
    operationId: op,
    shardId,
    attemptId,
    instanceId,
    rows: 10,
    errorRows: 0,
    columns: ["name"],
    chunks: [],
    committedAt: at(900),
  });
}

/** The synthetic ledger (two operations sharing an instance) the reports are computed from. */
async function seedLedger(): Promise<void> {
  const A = "costop-a";
  const B = "costop-b";
  await manifest(A, "succeeded", -10, 1000);
  await manifest(B, "succeeded", 0, 200);
  // A: a spot instance reclaimed at 600 s, then an on-demand fallback from 300 to 1500 s.
  await fleet(A, [instance("i-spot1", "spot", 0, 600), instance("i-od1", "on-demand", 300, 1500)]);
  // B's spot instance ran a (losing) straggler copy of A's shard, then B's own shard.
  await fleet(B, [instance("i-b", "spot", 0, 120)]);
  await attempt(A, "s000000", "a1", "i-spot1", 0, 300, 6, "interrupted");
  await attempt(A, "s000000", "a2", "i-od1", 300, 900, 10, "completed");
  await attempt(A, "s000001", "a3", "i-spot1", 0, 600, 10, "completed");
  await attempt(A, "s000001", "a4", "i-b", 0, 60, 10, "completed");
  await attempt(B, "s000000", "b1", "i-b", 60, 120, 10, "completed");
  await done(A, "s000000", "a2", "i-od1");
  await done(A, "s000001", "a3", "i-spot1");
}

function service() {
  return new CostService({
    store: env.store,
    clock: systemClock,
    logger: silentLogger(),
    // The local stack's simulated prices: spot $0.03/h, on-demand $0.10/h.
    prices: new TablePriceSource(),
  });
}

describe("cost report", () => {
  it("charges work, idle, a reclaim and a losing straggler copy; compares with all on-demand", async () => {
    const A = "costop-a";
    const B = "costop-b";

    const report = await service().compute(A);
    // i-spot1: 600 s × $0.03/h = 0.005, all A's work. i-od1: 1200 s × $0.10/h = 0.0333…, half
    // busy with A (600 s), half idle. i-b: 120 s × $0.03/h = 0.001, half A's straggler copy.
    expect(report.workUsd).toBeCloseTo(0.005 + 0.1 / 6 + 0.0005, 8);
    expect(report.idleUsd).toBeCloseTo(0.1 / 6, 8);
    expect(report.totalUsd).toBeCloseTo(report.workUsd + report.idleUsd, 8);
    expect(report.byMarket).toEqual([
      { market: "on-demand", usd: expect.closeTo(0.1 / 3, 8), instances: 1 },
      { market: "spot", usd: expect.closeTo(0.0055, 8), instances: 2 },
    ]);
    expect(report.byInstanceType).toEqual([
      { instanceType: "local.small", usd: expect.closeTo(report.totalUsd, 8), instances: 3 },
    ]);
    const ib = report.instances.find((i) => i.id === "i-b");
    expect(ib).toMatchObject({ launchedForOperation: false, idleUsd: 0 });
    expect(ib?.otherOperationsUsd).toBeCloseTo(0.0005, 8);
    // Counterfactual: i-spot1 600 s + i-od1 1200 s + half of i-b's 120 s, at $0.10/h.
    const cf = (0.1 * (600 + 1200 + 60)) / 3600;
    expect(report.onDemandCounterfactualUsd).toBeCloseTo(cf, 8);
    expect(report.savingPercent).toBeCloseTo(((cf - report.totalUsd) / cf) * 100, 5);
    // Wasted: shard 0 processed 16 rows for 10 (6 redone); shard 1 20 for 10 (a losing copy).
    expect(report.wasted.rowsRedone).toBe(16);
    expect(report.wasted.losingCopies).toBe(1);
    const shard0 = ((0.005 / 3 + 0.1 / 6) * 6) / 16;
    const shard1 = (((0.005 * 2) / 3 + 0.0005) * 10) / 20;
    expect(report.wasted.usd).toBeCloseTo(shard0 + shard1, 8);
    expect(report.rows).toBe(20);
    expect(report.rowsPerDollar).toBeCloseTo(20 / report.totalUsd, 3);
    expect(report.provisional).toBe(false);
    expect(report.unpricedInstances).toEqual([]);
    // Written to S3 where GET finds it.
    const stored = await env.store.getJson(keys.cost(A), costReportSchema);
    expect(stored).toEqual(report);

    // B's report charges the rest of i-b: the parts of the shared instance add up to its bill.
    const b = await service().compute(B);
    expect(b.totalUsd + (ib?.workUsd ?? 0)).toBeCloseTo(0.001, 9);
  });

  it("serves GET /operations/:id/cost: 404 unknown, 400 not an id, 409 before the end, the report after", async () => {
    const store = env.store;
    const logger = silentLogger();
    const operations = new OperationService({ store, logger, clock: systemClock });
    const app = buildApp({ operations, logger, maxUploadBytes: 1 << 20, cost: service() });
    try {
      const unknown = await app.inject("/operations/nosuchop/cost");
      expect(unknown.statusCode).toBe(404);
      // As GET /operations/:id answers: 400 naming what cannot be an id.
      const bad = await app.inject("/operations/..%2Fx/cost");
      expect(bad.statusCode).toBe(400);
      expect(bad.json().error.message).toMatch(/"\.\.\/x" is not a valid operation id/);

      await manifest("costop-run", "running", 0);
      const early = await app.inject("/operations/costop-run/cost");
      expect(early.statusCode).toBe(409);
      expect(early.json().error.code).toBe("NOT_READY");

      // Finished with no report yet (e.g. before a restart): computed on first read.
      await manifest("costop-late", "failed", 0, 100);
      await fleet("costop-late", [instance("i-late", "spot", 0, 30)]);
      const late = await app.inject("/operations/costop-late/cost");
      expect(late.statusCode).toBe(200);
      const body = costReportSchema.parse(late.json());
      // Under a minute is billed as a minute: 60 s × $0.03/h, all idle.
      expect(body.totalUsd).toBeCloseTo(0.0005, 9);
      expect(body.idleUsd).toBeCloseTo(0.0005, 9);
      expect(body.rowsPerDollar).toBeCloseTo(20 / 0.0005, 3);

      const csv = await app.inject("/operations/costop-late/cost?format=csv");
      expect(csv.statusCode).toBe(200);
      expect(csv.headers["content-type"]).toMatch(/^text\/csv/);
      expect(csv.headers["content-disposition"]).toBe(
        'attachment; filename="costop-late-cost.csv"',
      );
      const lines = csv.body.trimEnd().split("\r\n");
      expect(lines[0]).toBe("kind,name,value,unit,detail");
      expect(lines[1]).toBe("total,costop-late,0.0005,USD,");
      expect(lines.find((l) => l.startsWith("instance,i-late,"))).toMatch(
        /"spot local.small local-1a; billed 60 s/,
      );

      const xlsx = await app.inject("/operations/costop-late/cost?format=xlsx");
      expect(xlsx.statusCode).toBe(200);
      const wb = new ExcelJS.Workbook();
      await wb.xlsx.load(xlsx.rawPayload as unknown as ArrayBuffer);
      const row = wb.getWorksheet("Cost")?.getRow(2).values as unknown[];
      expect(row.slice(1, 5)).toEqual(["total", "costop-late", 0.0005, "USD"]);

      const svg = await app.inject("/operations/costop-late/cost?format=svg");
      expect(svg.statusCode).toBe(200);
      expect(svg.headers["content-type"]).toBe("image/svg+xml");
      expect(svg.body).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
      expect(svg.body).toContain("spot $0.000500");
      expect(svg.body).not.toContain("on-demand $");

      const badFormat = await app.inject("/operations/costop-late/cost?format=pdf");
      expect(badFormat.statusCode).toBe(400);
    } finally {
      await app.close();
    }
  });
});

describe("cost table and chart", () => {
  it("prints the report's lines for the terminal and charts it by market", async () => {
    const { formatCostTable } = await import("../../shared/cost-format.ts");
    const report = await service().compute("costop-a");
    const text = formatCostTable(report);
    expect(text).toMatch(/^Cost of operation costop-a\n/);
    expect(text).toMatch(/market spot\s+\$0\.005500\s+2 inst\./);
    expect(text).toMatch(/wasted work\s+\$0\.00\d+\s+16 rows redone, 1 losing copies/);
    expect(text).toMatch(/saving\s+\d+\.\d%/);
    // The timeline adds up to the total, and the chart draws one line per market.
    const timelineUsd = report.timeline.reduce((sum, p) => sum + p.usd, 0);
    expect(timelineUsd).toBeCloseTo(report.totalUsd, 8);
    const { costChartSvg } = await import("./chart.ts");
    const svg = costChartSvg(report);
    expect(svg.match(/<polyline /g)).toHaveLength(2);
    expect(svg).toContain("on-demand $0.0333");
    expect(svg).toContain("spot $0.00550");
  });
});
