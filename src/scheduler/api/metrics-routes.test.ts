/**
 * `GET /metrics` against a real local S3: admin only (it covers every tenant), Prometheus text,
 * request durations by route pattern, and series that follow what S3 holds.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalAws, startLocalAws } from "../../../test/support/local-aws.ts";
import { seedManifest } from "../../../test/support/seed-manifest.ts";
import { systemClock } from "../../shared/clock.ts";
import { parseApiTokens } from "../../shared/config.ts";
import { keys } from "../../shared/keys.ts";
import { silentLogger } from "../../shared/logger.ts";
import { shardDoneSchema } from "../../shared/schemas/shard.ts";
import { tokenLine } from "../../shared/schemas/tokens.ts";
import { SchedulerMetrics } from "../metrics/metrics.ts";
import { OperationService } from "../operations.ts";
import { buildApp } from "./app.ts";
import { TenantDirectory } from "./tenants.ts";

const ADMIN = randomBytes(24).toString("hex");
const MEMBER = randomBytes(24).toString("hex");

let env: LocalAws;
beforeAll(async () => {
  env = await startLocalAws("metrics-routes");
});
afterAll(async () => {
  await env?.close();
});

function app(maxAgeMs = 0) {
  const logger = silentLogger();
  const tenants = new TenantDirectory(
    parseApiTokens(
      [
        tokenLine({ tenant: "ops", role: "admin", token: ADMIN }),
        tokenLine({ tenant: "acme", role: "member", token: MEMBER }),
      ].join("\n"),
      "test",
    ),
  );
  const metrics = new SchedulerMetrics(
    { store: env.store, logger, clock: systemClock, sqs: env.clients.sqs },
    { queues: { work: env.resources.queues.work }, maxAgeMs },
  );
  return buildApp({
    operations: new OperationService({ store: env.store, logger, clock: systemClock }),
    logger,
    maxUploadBytes: 1 << 20,
    tenants,
    metrics,
  });
}

const auth = (token: string) => ({ authorization: `Bearer ${token}` });

function value(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("GET /metrics", () => {
  it("is for admin tokens only: a member gets 403, no token 401", async () => {
    const a = app();
    expect((await a.inject({ url: "/metrics" })).statusCode).toBe(401);
    const member = await a.inject({ url: "/metrics", headers: auth(MEMBER) });
    expect(member.statusCode).toBe(403);
    expect(member.json()).toEqual({
      error: {
        code: "FORBIDDEN",
        message: "metrics cover every tenant: scraping them needs an admin token",
      },
    });
    const admin = await a.inject({ url: "/metrics", headers: auth(ADMIN) });
    expect(admin.statusCode).toBe(200);
    expect(admin.headers["content-type"]).toMatch(/^text\/plain; version=0\.0\.4/);
    await a.close();
  });

  it("follows the operation's commit markers and times requests by route", async () => {
    const a = app();
    const id = "op-metrics-1";
    const now = new Date().toISOString();
    await seedManifest(
      { store: env.store, clock: systemClock },
      {
        v: 1,
        id,
        tenant: "acme",
        status: "running",
        spec: {
          version: 1,
          task: { name: "transform", options: {} },
          shardSize: 5,
          toleratedFailurePercent: 10,
        },
        input: { key: keys.input(id, "csv"), filename: "x.csv", format: "csv", bytes: 1 },
        headers: ["n"],
        rows: 10,
        shards: [
          { id: "s000000", start: 0, end: 5 },
          { id: "s000001", start: 5, end: 10 },
        ],
        createdAt: now,
        updatedAt: now,
        startedAt: now,
      },
    );
    await a.inject({ url: `/operations/${id}`, headers: auth(MEMBER) });
    let text = (await a.inject({ url: "/metrics", headers: auth(ADMIN) })).body;
    const rows = (o: string) =>
      `shardfleet_operation_rows{operation="${id}",tenant="acme",outcome="${o}"}`;
    expect(value(text, rows("done"))).toBe(0);
    expect(value(text, rows("total"))).toBe(10);
    expect(value(text, 'shardfleet_shards{state="pending"}')).toBe(2);
    expect(value(text, 'shardfleet_operations{tenant="acme",status="running"}')).toBe(1);

    await env.store.putJsonIfAbsent(keys.done(id, "s000000"), shardDoneSchema, {
      v: 1,
      operationId: id,
      shardId: "s000000",
      attemptId: "a1",
      instanceId: "i-1",
      rows: 5,
      errorRows: 2,
      columns: [],
      chunks: [],
      committedAt: now,
    });
    text = (await a.inject({ url: "/metrics", headers: auth(ADMIN) })).body;
    expect(value(text, rows("done"))).toBe(5);
    expect(value(text, rows("failed"))).toBe(2);
    expect(value(text, 'shardfleet_rows_total{outcome="done"}')).toBe(5);
    expect(value(text, 'shardfleet_shards{state="pending"}')).toBe(1);
    expect(value(text, 'shardfleet_shards{state="done"}')).toBe(1);
    expect(value(text, 'shardfleet_queue_messages{queue="work",state="visible"}')).toBe(0);
    expect(
      value(
        text,
        'shardfleet_api_request_duration_seconds_count{method="GET",route="/operations/:id",status="200"}',
      ),
    ).toBe(1);
    await a.close();
  });
});
