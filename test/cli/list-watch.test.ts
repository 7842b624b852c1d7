/**
 * `list`, `watch`, `status ID` exit codes and `cost --format`, through the CLI from its sources
 * against a scheduler API over the real local S3 server.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../../src/scheduler/api/app.ts";
import { CostService } from "../../src/scheduler/cost/cost-service.ts";
import { TablePriceSource } from "../../src/scheduler/cost/price-source.ts";
import { newOperationId, OperationService } from "../../src/scheduler/operations.ts";
import { systemClock } from "../../src/shared/clock.ts";
import { silentLogger } from "../../src/shared/logger.ts";
import type { LifecycleStatus } from "../../src/shared/schemas/operation.ts";
import { type LocalAws, startLocalAws } from "../support/local-aws.ts";
import { CLI, runNode } from "../support/local-cli.ts";
import { splitManifest } from "../support/manifests.ts";
import { seedManifest } from "../support/seed-manifest.ts";

const root = path.resolve(import.meta.dirname, "../..");

let env: LocalAws;
let app: FastifyInstance;
let url: string;
let dir: string;
let t = Date.parse("2026-11-01T00:00:00Z");

async function seed(status: LifecycleStatus): Promise<string> {
  t += 1000;
  const id = newOperationId(t);
  await seedManifest(
    { store: env.store, clock: systemClock },
    splitManifest(id, 2, new Date(t).toISOString(), status),
  );
  return id;
}

const run = (args: string[]) => runNode([...CLI, ...args, "--api", url]);

beforeAll(async () => {
  env = await startLocalAws("cli-list-watch");
  dir = await mkdtemp(path.join(tmpdir(), "shardfleet-cli-lw-"));
  const logger = silentLogger();
  app = buildApp({
    operations: new OperationService({ store: env.store, logger, clock: systemClock }),
    logger,
    maxUploadBytes: 1 << 20,
    events: { pollMs: 100 },
    cost: new CostService({
      store: env.store,
      clock: systemClock,
      logger,
      prices: new TablePriceSource(),
    }),
  });
  url = await app.listen({ host: "127.0.0.1", port: 0 });
});
afterAll(async () => {
  await app?.close();
  await env?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("shardfleet list, status, watch", () => {
  it("list filters by status and pages with the cursor it prints", async () => {
    const older = await seed("paused");
    await seed("succeeded");
    const newer = await seed("paused");
    const first = await run(["list", "--status", "paused", "--limit", "1", "--json"]);
    expect(first.code).toBe(0);
    const page = JSON.parse(first.stdout) as { operations: { id: string }[]; nextCursor: string };
    expect(page.operations.map((o) => o.id)).toEqual([newer]);
    const second = await run(["list", "--status", "paused", "--cursor", page.nextCursor]);
    expect(second.code).toBe(0);
    expect(second.stdout.trim().split("\n")).toEqual([
      expect.stringMatching(new RegExp(`^${older}\\s+default\\s+paused`)),
    ]);
    const bad = await run(["list", "--status", "done"]);
    expect(bad.code).toBe(64);
    expect(bad.stderr).toMatch(/--status <status>' argument 'done' is invalid/);
    expect(bad.stderr).not.toMatch(/\n\s+at /);
  });

  it("status ID exits 0 succeeded, 2 with failures, 1 failed, 75 still running", async () => {
    const cases: [LifecycleStatus, number][] = [
      ["succeeded", 0],
      ["succeeded-with-failures", 2],
      ["failed", 1],
      ["running", 75],
    ];
    for (const [status, code] of cases) {
      const id = await seed(status);
      const r = await run(["status", id]);
      expect({ status, code: r.code }).toEqual({ status, code });
    }
  });

  it("watch follows the events stream until the operation ends, and exits with its code", async () => {
    const id = await seed("running");
    const child = spawn(process.execPath, [...CLI, "watch", id, "--json", "--api", url], {
      cwd: root,
      env: { PATH: process.env.PATH },
    });
    let stdout = "";
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    await new Promise<void>((resolve) => {
      child.stdout.on("data", (chunk: Buffer) => {
        stdout += chunk.toString();
        if (stdout.includes('"event":"status"')) resolve();
      });
    });
    expect(stdout).toContain('"status":"running"');
    // The operation ends while watch is attached: it learns it from the stream.
    await seedManifest(
      { store: env.store, clock: systemClock },
      splitManifest(id, 2, new Date(t).toISOString(), "succeeded-with-failures"),
    );
    expect(await exited).toBe(2);
    const events = stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { event: string; data: { status?: string } });
    expect(events.filter((e) => e.event === "status").map((e) => e.data.status)).toEqual([
      "running",
      "succeeded-with-failures",
    ]);
  });

  it("watch of an unknown id is one line and exit 1", async () => {
    const r = await run(["watch", "op-nope"]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/not found/);
  });

  it("cost --format csv|xlsx|svg -o FILE writes the report as that file; -o alone is a usage error", async () => {
    const id = await seed("succeeded");
    const csv = path.join(dir, "c.csv");
    const r = await run(["cost", id, "--format", "csv", "-o", csv]);
    expect({ code: r.code, stdout: r.stdout.trim() }).toEqual({ code: 0, stdout: csv });
    expect(await readFile(csv, "utf-8")).toMatch(new RegExp(id));
    const svg = path.join(dir, "c.svg");
    expect((await run(["cost", id, "--format", "svg", "-o", svg])).code).toBe(0);
    expect(await readFile(svg, "utf-8")).toMatch(/^<svg|^<\?xml/);
    const xlsx = path.join(dir, "c.xlsx");
    expect((await run(["cost", id, "--format", "xlsx", "-o", xlsx])).code).toBe(0);
    expect((await readFile(xlsx)).subarray(0, 2).toString()).toBe("PK");
    const live = await seed("running");
    const early = await run(["cost", live, "--format", "csv", "-o", path.join(dir, "no.csv")]);
    expect(early.code).toBe(1);
    expect(early.stderr).toMatch(/409.*running/);
    expect((await run(["cost", id, "-o", csv])).code).toBe(64);
  });
});
