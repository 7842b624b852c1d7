/**
 * The scheduler loop against a real local S3/SQS server, with the real splitter and merger and
 * no workers: shard commits are written by hand, the way a worker writes them.
 */
import ExcelJS from "exceljs";
import type { FastifyInstance } from "fastify";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { multipart, transformSpec } from "../../test/support/api.ts";
import { freshBucket, type LocalAws, startLocalAws } from "../../test/support/local-aws.ts";
import { seedManifest } from "../../test/support/seed-manifest.ts";
import { waitFor } from "../../test/support/wait.ts";
import { systemClock } from "../shared/clock.ts";
import { keys } from "../shared/keys.ts";
import { silentLogger } from "../shared/logger.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import type { Manifest, ShardRange } from "../shared/schemas/operation.ts";
import { attemptSchema, shardDoneSchema, shardMessageSchema } from "../shared/schemas/shard.ts";
import { buildApp } from "./api/app.ts";
import { FleetRecords } from "./fleet/fleet-manager/fleet-records.ts";
import { loadManifest, OperationService } from "./operations.ts";
import { finalStatus, Scheduler } from "./scheduler.ts";

let env: LocalAws;
beforeAll(async () => {
  env = await startLocalAws("sched-test");
});
afterAll(async () => {
  await env?.close();
});

const running: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  for (const r of running.splice(0).reverse()) await r.close();
});

/** A fresh bucket and queues per test, so counts and listings see only that test's work. */
async function scope(
  options: { dlq?: boolean; intervalMs?: number; wakeOnQueued?: boolean; jobRetries?: number } = {},
) {
  const { resources, store } = await freshBucket(env, "sched");
  const logger = silentLogger();
  const operations = new OperationService({
    store,
    logger,
    clock: systemClock,
    ...(options.wakeOnQueued ? { onQueued: () => scheduler.wake() } : {}),
  });
  const app: FastifyInstance = buildApp({ operations, logger, maxUploadBytes: 1 << 20 });
  const scheduler = new Scheduler(
    { store, queue: env.queue, logger, clock: systemClock },
    {
      workQueueUrl: resources.queues.work,
      intervalMs: options.intervalMs ?? 20,
      ...(options.jobRetries !== undefined ? { jobRetries: options.jobRetries } : {}),
      ...(options.dlq ? { dlqUrl: resources.queues.dlq } : {}),
    },
  );
  running.push({ close: () => app.close() }, { close: () => scheduler.stop() });

  const submit = async (csv: string, spec: Record<string, unknown> = {}) => {
    const { payload, headers } = await multipart([
      { name: "spec", value: JSON.stringify(transformSpec(spec)) },
      { name: "file", filename: "people.csv", type: "text/csv", data: csv },
    ]);
    const res = await app.inject({ method: "POST", url: "/operations", payload, headers });
    expect(res.statusCode).toBe(202);
    return (res.json() as { id: string }).id;
  };
  const view = async (id: string) => (await app.inject(`/operations/${id}`)).json();
  const until = (id: string, status: string) =>
    waitFor(`${id} ${status}`, async () => {
      const v = await view(id);
      return v.status === status ? v : undefined;
    });
  return { resources, store, app, scheduler, submit, view, until };
}

const CSV =
  "name,city\nada,london\nalan,wilmslow\ngrace,arlington\nedsger,nuenen\nbarbara,boston\n";
const NAMES = ["ada", "alan", "grace", "edsger", "barbara"];

/** What the fleet manager records while no instance can be had (its fleet record's wait). */
async function waitForCapacity(store: ObjectStore, manifest: Manifest) {
  const records = new FleetRecords({
    store,
    clock: systemClock,
    logger: silentLogger(),
    instance: () => undefined,
    written: () => {},
    isWatched: () => false,
  });
  records.wait(manifest.id, { since: Date.now(), reason: "no spot capacity" });
  await records.flush();
}

/** What SQS's redrive leaves in the DLQ once a shard's message reached maxReceiveCount. */
function deadLetter(dlqUrl: string, operationId: string, shard: ShardRange) {
  return env.queue.sendRaw(
    dlqUrl,
    JSON.stringify({ v: 1, operationId, shardId: shard.id, start: shard.start, end: shard.end }),
  );
}

/** Commits a shard the way a worker does: result chunk(s), then done.json. */
async function commitShard(
  store: ObjectStore,
  manifest: Manifest,
  shardId: string,
  errorAt: ReadonlySet<number> = new Set(),
) {
  const shard = manifest.shards!.find((s) => s.id === shardId)!;
  const lines: string[] = [];
  for (let i = shard.start; i < shard.end; i++) {
    lines.push(
      JSON.stringify(
        errorAt.has(i) ? { i, e: `row ${i} failed` } : { i, r: { upper: NAMES[i]!.toUpperCase() } },
      ),
    );
  }
  const chunk = keys.chunk(manifest.id, shardId, shard.start, shard.end);
  await store.putText(chunk, `${lines.join("\n")}\n`);
  const errorRows = [...errorAt].filter((i) => i >= shard.start && i < shard.end).length;
  await store.putJsonIfAbsent(keys.done(manifest.id, shardId), shardDoneSchema, {
    v: 1,
    operationId: manifest.id,
    shardId,
    attemptId: "a1",
    instanceId: "test",
    rows: shard.end - shard.start,
    errorRows,
    columns: ["upper"],
    chunks: [{ key: chunk, start: shard.start, end: shard.end }],
    committedAt: new Date().toISOString(),
  });
}

async function readXlsx(payload: Buffer): Promise<unknown[][]> {
  const workbook = new ExcelJS.Workbook();
  await workbook.xlsx.load(payload as unknown as ArrayBuffer);
  const rows: unknown[][] = [];
  workbook.worksheets[0]!.eachRow((row) => rows.push((row.values as unknown[]).slice(1)));
  return rows;
}

describe("finalStatus", () => {
  it("succeeds without errors, tolerates failures up to the percent, fails above it", () => {
    expect(finalStatus(100, 0, 0)).toBe("succeeded");
    expect(finalStatus(100, 5, 5)).toBe("succeeded-with-failures");
    expect(finalStatus(100, 6, 5)).toBe("failed");
    expect(finalStatus(100, 100, 100)).toBe("succeeded-with-failures");
    expect(finalStatus(3, 1, 0)).toBe("failed");
  });
});

describe("Scheduler", () => {
  it("drives an operation from queued to succeeded-with-failures, reporting progress on the way", async () => {
    const s = await scope();
    const id = await s.submit(CSV, { shardSize: 2, toleratedFailurePercent: 100 });
    expect((await s.view(id)).status).toBe("queued");

    s.scheduler.start();
    const split = await s.until(id, "running");
    expect(split).toMatchObject({
      rows: { total: 5, done: 0, failed: 0 },
      shards: { total: 3, pending: 3, running: 0, done: 0, failed: 0 },
    });
    expect(split.startedAt).toEqual(expect.any(String));

    // One message per shard, matching the manifest's ranges.
    const manifest = (await loadManifest(s.store, id))!;
    const messages = await env.queue.receive(s.resources.queues.work, {
      max: 10,
      waitSeconds: 0,
      visibilityTimeout: 30,
    });
    expect(
      messages
        .map((m) => shardMessageSchema.parse(JSON.parse(m.body)))
        .sort((a, b) => a.start - b.start),
    ).toEqual(
      manifest.shards!.map((sh) => ({
        v: 1,
        operationId: id,
        shardId: sh.id,
        start: sh.start,
        end: sh.end,
      })),
    );

    const early = await s.app.inject(`/operations/${id}/result`);
    expect(early.statusCode).toBe(409);
    expect(early.json().error.message).toMatch(/is running/);

    // A worker picks up the first shard: it shows as running.
    const [first, second, third] = manifest.shards!.map((sh) => sh.id);
    await s.store.putJson(keys.attempt(id, first!, "a1"), attemptSchema, {
      v: 1,
      attemptId: "a1",
      operationId: id,
      shardId: first!,
      instanceId: "test",
      market: "spot",
      startedAt: new Date().toISOString(),
      rowsDone: 0,
      cause: "running",
    });
    expect((await s.view(id)).shards).toEqual({
      total: 3,
      pending: 2,
      running: 1,
      done: 0,
      failed: 0,
    });

    await commitShard(s.store, manifest, first!);
    await commitShard(s.store, manifest, second!, new Set([3]));
    expect(await s.view(id)).toMatchObject({
      status: "running",
      rows: { total: 5, done: 4, failed: 1 },
      shards: { total: 3, pending: 1, running: 0, done: 2, failed: 0 },
    });

    await commitShard(s.store, manifest, third!);
    const finished = await s.until(id, "succeeded-with-failures");
    expect(finished).toMatchObject({
      rows: { total: 5, done: 5, failed: 1 },
      shards: { total: 3, pending: 0, running: 0, done: 3, failed: 0 },
      result: { rows: 5, errorRows: 1, columns: ["upper"] },
    });
    expect(finished.finishedAt).toEqual(expect.any(String));

    const res = await s.app.inject(`/operations/${id}/result`);
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toBe(
      "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    );
    expect(res.headers["content-disposition"]).toBe(`attachment; filename="${id}-result.xlsx"`);
    expect(await readXlsx(res.rawPayload)).toEqual([
      ["name", "city", "upper", "error"],
      ["ada", "london", "ADA"],
      ["alan", "wilmslow", "ALAN"],
      ["grace", "arlington", "GRACE"],
      ["edsger", "nuenen", undefined, "row 3 failed"],
      ["barbara", "boston", "BARBARA"],
    ]);
  });

  it("fails an operation whose error rate is over the tolerance, keeping its result", async () => {
    const s = await scope();
    const id = await s.submit(CSV, { shardSize: 5, toleratedFailurePercent: 10 });
    s.scheduler.start();
    await s.until(id, "running");
    const manifest = (await loadManifest(s.store, id))!;
    await commitShard(s.store, manifest, manifest.shards![0]!.id, new Set([1]));
    const failed = await s.until(id, "failed");
    expect(failed.error).toEqual({
      code: "TASK_FAILED",
      message: "1 of 5 rows failed, over the tolerated 10%",
    });
    expect((await s.app.inject(`/operations/${id}/result`)).statusCode).toBe(200);
  });

  it("fails an operation whose split throws, with the error's code and message", async () => {
    const s = await scope();
    const id = await s.submit(CSV);
    // The input vanishes before the split (e.g. expired): the split cannot succeed.
    await s.store.deletePrefix(keys.input(id, "csv"));
    s.scheduler.start();
    const failed = await s.until(id, "failed");
    expect(failed.error.code).toBe("NOT_FOUND");
    expect(failed.error.message).toMatch(/input workbook .* not found/);
    expect(failed.finishedAt).toEqual(expect.any(String));
  });

  it("starts a merge again after transient errors instead of failing the operation", async () => {
    const s = await scope();
    const id = await s.submit(CSV, { shardSize: 5 });
    s.scheduler.start();
    await s.until(id, "running");
    const manifest = (await loadManifest(s.store, id))!;
    // The first two chunk reads of the merge meet a dropped connection (past the store's own
    // resumes) and an S3 503.
    const faults = [
      Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }),
      Object.assign(new Error("Please reduce your request rate."), {
        name: "SlowDown",
        $metadata: { httpStatusCode: 503 },
      }),
    ];
    const original = s.store.getStream.bind(s.store);
    s.store.getStream = async (key: string, signal?: AbortSignal) => {
      const fault = key.includes("/chunks/") ? faults.shift() : undefined;
      if (fault) throw fault;
      return original(key, signal);
    };
    await commitShard(s.store, manifest, manifest.shards![0]!.id);
    const done = await s.until(id, "succeeded");
    expect(faults).toEqual([]);
    expect(done.result.rows).toBe(5);
  });

  it("fails the operation once a transient error outlasts the retries, naming it", async () => {
    const s = await scope({ jobRetries: 1 });
    const id = await s.submit(CSV, { shardSize: 5 });
    s.scheduler.start();
    await s.until(id, "running");
    const manifest = (await loadManifest(s.store, id))!;
    let reads = 0;
    const original = s.store.getStream.bind(s.store);
    s.store.getStream = async (key: string, signal?: AbortSignal) => {
      if (!key.includes("/chunks/")) return original(key, signal);
      reads++;
      throw Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" });
    };
    await commitShard(s.store, manifest, manifest.shards![0]!.id);
    const failed = await s.until(id, "failed");
    expect(failed.error.message).toMatch(/ECONNRESET/);
    expect(reads).toBe(2);
  });

  it("resumes after a restart: an interrupted split is redone, an interrupted merge finished", async () => {
    const s = await scope();
    const splitting = await s.submit(CSV, { shardSize: 2 });
    const merging = await s.submit(CSV, { shardSize: 5 });
    // As a crashed scheduler would have left them.
    const m1 = (await loadManifest(s.store, splitting))!;
    await seedManifest({ store: s.store, clock: systemClock }, { ...m1, status: "splitting" });
    const m2 = (await loadManifest(s.store, merging))!;
    const m2Split = {
      ...m2,
      status: "merging" as const,
      rows: 5,
      shards: [{ id: "s000000", start: 0, end: 5 }],
    };
    await s.store.putText(
      keys.shardInput(merging, "s000000"),
      NAMES.map((n, i) => JSON.stringify({ i, c: [n, "x"] })).join("\n"),
    );
    await seedManifest({ store: s.store, clock: systemClock }, m2Split);
    await commitShard(s.store, m2Split, "s000000");

    s.scheduler.start();
    expect((await s.until(splitting, "running")).shards.total).toBe(3);
    expect((await s.until(merging, "succeeded")).result.rows).toBe(5);
  });

  it("commits a dead-lettered shard as failed, so its operation still finishes", async () => {
    const s = await scope({ dlq: true });
    const id = await s.submit(CSV, { shardSize: 3, toleratedFailurePercent: 100 });
    s.scheduler.start();
    await s.until(id, "running");
    const manifest = (await loadManifest(s.store, id))!;
    const [first, second] = manifest.shards!;
    await commitShard(s.store, manifest, first!.id);
    // SQS gave up on the second shard after maxReceiveCount deliveries.
    await deadLetter(s.resources.queues.dlq, id, second!);
    const done = await s.until(id, "succeeded-with-failures");
    expect(done).toMatchObject({
      rows: { total: 5, failed: 2 },
      shards: { total: 2, done: 1, failed: 1, pending: 0 },
    });
    const marker = await s.store.getJson(keys.done(id, second!.id), shardDoneSchema);
    expect(marker?.failed).toMatch(/dead-letter queue/);
    const dlq = await env.queue.receive(s.resources.queues.dlq, {
      max: 10,
      waitSeconds: 0,
      visibilityTimeout: 0,
    });
    expect(dlq).toEqual([]);
  });

  it("sends a paused operation's dead-lettered shard back to the work queue, uncommitted", async () => {
    const s = await scope({ dlq: true });
    const id = await s.submit(CSV, { shardSize: 3, toleratedFailurePercent: 100 });
    s.scheduler.start();
    await s.until(id, "running");
    const paused = await s.app.inject({ method: "POST", url: `/operations/${id}/pause` });
    expect(paused.statusCode).toBe(202);
    const manifest = (await loadManifest(s.store, id))!;
    const second = manifest.shards![1]!;
    // Released again and again while paused, it ran out of receives.
    await deadLetter(s.resources.queues.dlq, id, second);
    // The split's two messages, then the one sent back.
    const all: string[] = [];
    const received = await waitFor("the shard back on the work queue", async () => {
      for (;;) {
        const batch = await env.queue.receive(s.resources.queues.work, {
          max: 10,
          waitSeconds: 0,
          visibilityTimeout: 30,
        });
        if (batch.length === 0) break;
        all.push(...batch.map((m) => shardMessageSchema.parse(JSON.parse(m.body)).shardId));
      }
      return all.length >= 3 ? all : undefined;
    });
    expect(received.filter((shard) => shard === second.id)).toHaveLength(2);
    expect(await s.store.getJson(keys.done(id, second.id), shardDoneSchema)).toBeUndefined();
    expect((await s.view(id)).status).toBe("paused");
  });

  it("commits a shard dead-lettered while its operation waits for capacity, so it still ends", async () => {
    const s = await scope({ dlq: true });
    const id = await s.submit(CSV, { shardSize: 3, toleratedFailurePercent: 100 });
    s.scheduler.start();
    await s.until(id, "running");
    const manifest = (await loadManifest(s.store, id))!;
    await waitForCapacity(s.store, manifest);
    const [first, second] = manifest.shards!;
    await commitShard(s.store, manifest, first!.id);
    await deadLetter(s.resources.queues.dlq, id, second!);
    const done = await s.until(id, "succeeded-with-failures");
    expect(done.shards).toMatchObject({ total: 2, done: 1, failed: 1, pending: 0 });
    const marker = await s.store.getJson(keys.done(id, second!.id), shardDoneSchema);
    expect(marker?.failed).toMatch(/dead-letter queue/);
  });

  it("merges an operation waiting for capacity once its shards are committed anyway", async () => {
    const s = await scope();
    const id = await s.submit(CSV, { shardSize: 2 });
    s.scheduler.start();
    await s.until(id, "running");
    // The fleet manager's status while no instance runs; workers may still finish the shards.
    const manifest = (await loadManifest(s.store, id))!;
    await waitForCapacity(s.store, manifest);
    expect((await s.view(id)).waiting).toEqual({
      since: expect.any(String),
      reason: "no spot capacity",
    });
    for (const sh of manifest.shards!) await commitShard(s.store, manifest, sh.id);
    const done = await s.until(id, "succeeded");
    expect(done.waiting).toBeUndefined();
  });

  it("does not overwrite a status the fleet manager set while the split ran", async () => {
    const s = await scope();
    const id = await s.submit(CSV, { shardSize: 2 });
    // Failed for lack of capacity while queued/splitting: the split must not resurrect it.
    const manifest = (await loadManifest(s.store, id))!;
    await seedManifest(
      { store: s.store, clock: systemClock },
      { ...manifest, status: "splitting" },
    );
    const original = s.store.getJsonVersioned.bind(s.store);
    let failedOnce = false;
    // Flip the status to failed right before the split reads the manifest back (the state
    // machine's read, with its ETag, for the splitDone transition).
    s.store.getJsonVersioned = (async (key: string, schema: never, signal?: AbortSignal) => {
      if (
        !failedOnce &&
        key === keys.manifest(id) &&
        (await s.store.exists(keys.shardInput(id, "s000002")))
      ) {
        failedOnce = true;
        const current = (await loadManifest(s.store, id))!;
        await seedManifest(
          { store: s.store, clock: systemClock },
          {
            ...current,
            status: "failed",
            error: { code: "CAPACITY_DEADLINE", message: "no capacity" },
          },
        );
      }
      return original(key, schema, signal);
    }) as typeof s.store.getJsonVersioned;
    s.scheduler.start();
    const view = await s.until(id, "failed");
    expect(view.error).toEqual({ code: "CAPACITY_DEADLINE", message: "no capacity" });
    await new Promise((r) => setTimeout(r, 200));
    expect((await s.view(id)).status).toBe("failed");
  });

  it("starts a submission's split at once when woken, not at the next pass", async () => {
    // Ten minutes between passes: only the wake from the submission can start the split.
    const s = await scope({ intervalMs: 600_000, wakeOnQueued: true });
    s.scheduler.start();
    // Let the first pass (nothing to do yet) finish, so the scheduler is in its long pause.
    await new Promise((r) => setTimeout(r, 200));
    const id = await s.submit(CSV, { shardSize: 2 });
    const v = await s.until(id, "running");
    expect(v.shards.total).toBe(3);
    // A second submission while paused again is woken the same way.
    const second = await s.submit(CSV, { shardSize: 5 });
    expect((await s.until(second, "running")).shards.total).toBe(1);
    // A stop still ends the long pause at once.
    const stopping = performance.now();
    await s.scheduler.stop();
    expect(performance.now() - stopping).toBeLessThan(10_000);
  });

  it("starts the merge when the last shard commits, not at the next pass (commit watch)", async () => {
    // Ten minutes between passes: only the split's end and the commit watch wake it.
    const s = await scope({ intervalMs: 600_000, wakeOnQueued: true });
    s.scheduler.start();
    await new Promise((r) => setTimeout(r, 200));
    const id = await s.submit(CSV, { shardSize: 2 });
    await s.until(id, "running");
    const manifest = (await loadManifest(s.store, id))!;
    const [first, ...rest] = manifest.shards!;
    await commitShard(s.store, manifest, first!.id);
    // The pass after the split saw three shards left and watches them; nothing else runs a pass.
    for (const shard of rest) await commitShard(s.store, manifest, shard.id);
    const done = await s.until(id, "succeeded");
    expect(done.rows).toMatchObject({ total: NAMES.length, done: NAMES.length, failed: 0 });
  });

  it("stops cleanly and refuses to start twice", async () => {
    const s = await scope();
    expect(s.scheduler.state).toBe("idle");
    s.scheduler.start();
    expect(s.scheduler.state).toBe("running");
    expect(() => s.scheduler.start()).toThrow(/running/);
    await s.scheduler.stop();
    expect(s.scheduler.state).toBe("stopped");
  });
});
