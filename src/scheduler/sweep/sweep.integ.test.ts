/**
 * The self-healing sweep against a real local SQS/S3 server, with the real scheduler (split,
 * merge) and a real in-process worker: a shard whose message is deleted, and an operation whose
 * work queue is created again (its messages lost), still finish with every row exactly once.
 */
import { CreateQueueCommand, DeleteQueueCommand, PurgeQueueCommand } from "@aws-sdk/client-sqs";
import ExcelJS from "exceljs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { multipart, transformSpec } from "../../../test/support/api.ts";
import { freshBucket, type LocalAws, startLocalAws } from "../../../test/support/local-aws.ts";
import { waitFor } from "../../../test/support/wait.ts";
import { scriptedRunner } from "../../../test/support/worker.ts";
import { systemClock } from "../../shared/clock.ts";
import { keys } from "../../shared/keys.ts";
import { silentLogger } from "../../shared/logger.ts";
import { fleetRecordSchema } from "../../shared/schemas/fleet.ts";
import { redriveSchema, shardMessageSchema } from "../../shared/schemas/shard.ts";
import { Worker } from "../../worker/worker.ts";
import { buildApp } from "../api/app.ts";
import type { BacklogBound } from "../dispatch/fair-order.ts";
import { FleetRecords } from "../fleet/fleet-manager/fleet-records.ts";
import { loadManifest, OperationService } from "../operations.ts";
import { Scheduler } from "../scheduler.ts";
import { Sweep } from "./sweep.ts";

let env: LocalAws;
beforeAll(async () => {
  env = await startLocalAws("sweep-test");
});
afterAll(async () => {
  await env?.close();
});

const running: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const stop of running.splice(0).reverse()) await stop();
});

const ROWS = 40;
const CSV = `name\n${Array.from({ length: ROWS }, (_, i) => `row${i}`).join("\n")}\n`;

/** A fresh bucket and queues, the scheduler and the sweep; workers started by the test. */
async function scope(backlog?: BacklogBound) {
  const { name, resources, store } = await freshBucket(env, "sweep");
  const logger = silentLogger();
  const operations = new OperationService({ store, logger, clock: systemClock });
  const app = buildApp({ operations, logger, maxUploadBytes: 1 << 20 });
  const scheduler = new Scheduler(
    { store, queue: env.queue, logger, clock: systemClock },
    { workQueueUrl: resources.queues.work, intervalMs: 50, ...(backlog ? { backlog } : {}) },
  );
  const events = new FleetRecords({
    store,
    clock: systemClock,
    logger,
    instance: () => undefined,
    written: () => {},
    isWatched: () => false,
  });
  const sweep = new Sweep(
    { store, queue: env.queue, dispatch: scheduler, logger, clock: systemClock, events },
    {
      workQueueUrl: resources.queues.work,
      stragglerQueueUrl: resources.queues.straggler,
      intervalMs: 200,
      silenceMs: 1_500,
    },
  );
  running.push(
    () => app.close(),
    () => scheduler.stop(),
    () => sweep.stop(),
  );
  const submit = async () => {
    const { payload, headers } = await multipart([
      { name: "spec", value: JSON.stringify(transformSpec({ shardSize: 5 })) },
      { name: "file", filename: "rows.csv", type: "text/csv", data: CSV },
    ]);
    const res = await app.inject({ method: "POST", url: "/operations", payload, headers });
    expect(res.statusCode).toBe(202);
    return (res.json() as { id: string }).id;
  };
  const until = (id: string, status: string, timeoutMs = 60_000) =>
    waitFor(
      `${id} ${status}`,
      async () => {
        const m = await loadManifest(store, id);
        return m?.status === status ? m : undefined;
      },
      timeoutMs,
    );
  const startWorker = (runner = scriptedRunner(() => 5)) => {
    const worker = new Worker(
      { store, queue: env.queue, logger, createRunner: async () => runner },
      {
        instanceId: `i-${name}`,
        market: "on-demand",
        pluginDir: ".",
        queues: resources.queues,
        pollWaitSeconds: 1,
        visibilityTimeoutSeconds: 30,
      },
    );
    const run = worker.run();
    running.push(async () => {
      await worker.stop();
      await run;
    });
    return runner;
  };
  /** The output workbook's data rows (first column: the input name). */
  const outputNames = async (id: string) => {
    const stream = await store.getStream(keys.result(id));
    const chunks: Buffer[] = [];
    for await (const chunk of stream!) chunks.push(chunk as Buffer);
    const workbook = new ExcelJS.Workbook();
    await workbook.xlsx.load(Buffer.concat(chunks) as unknown as ArrayBuffer);
    const names: unknown[] = [];
    workbook.worksheets[0]!.eachRow((row, n) => {
      if (n > 1) names.push((row.values as unknown[])[1]);
    });
    return names;
  };
  const redrives = async (id: string, shardId: string) => {
    const list = await store.list(keys.redrivesPrefix(id, shardId));
    return Promise.all(list.map((k) => store.getJson(k, redriveSchema)));
  };
  const fleetEvents = async (id: string) =>
    (await store.getJson(keys.fleet(id), fleetRecordSchema))?.events ?? [];
  return {
    resources,
    store,
    scheduler,
    sweep,
    submit,
    until,
    startWorker,
    outputNames,
    redrives,
    fleetEvents,
  };
}

/** Deletes the work queue and creates it again under the same name: every message in it lost. */
async function recreateWorkQueue(url: string): Promise<void> {
  await env.clients.sqs.send(new PurgeQueueCommand({ QueueUrl: url }));
  await env.clients.sqs.send(new DeleteQueueCommand({ QueueUrl: url }));
  // Created in a later second than the operation (SQS's creation time has 1 s resolution).
  await new Promise((r) => setTimeout(r, 1_100));
  await env.clients.sqs.send(
    new CreateQueueCommand({
      QueueName: url.split("/").pop()!,
      Attributes: { VisibilityTimeout: "30" },
    }),
  );
}

const EVERY_ROW = Array.from({ length: ROWS }, (_, i) => `row${i}`);

describe("the self-healing sweep", () => {
  it("re-drives a shard whose message was deleted once the queues run dry, and the operation finishes with every row once", async () => {
    const s = await scope();
    const id = await s.submit();
    s.scheduler.start();
    const manifest = await s.until(id, "running");
    expect(manifest.shards).toHaveLength(8);
    // The dispatcher sends them at its passes (all eight fit the default backlog).
    await waitFor("every shard dispatched", async () =>
      (await s.scheduler.dispatched(id)) === 8 ? true : undefined,
    );

    // One shard's message vanishes (a path that deletes it, an operator's mistake).
    const [victim] = await env.queue.receive(s.resources.queues.work, {
      max: 1,
      waitSeconds: 0,
      visibilityTimeout: 30,
    });
    const lost = shardMessageSchema.parse(JSON.parse(victim!.body));
    await env.queue.delete(s.resources.queues.work, victim!.receiptHandle);

    s.sweep.start();
    const runner = s.startWorker();
    await s.until(id, "succeeded");

    // Only the lost shard was sent again, with its record and a fleet event naming it.
    const others = manifest.shards!.filter((sh) => sh.id !== lost.shardId);
    for (const sh of others) expect(await s.redrives(id, sh.id)).toEqual([]);
    expect(await s.redrives(id, lost.shardId)).toEqual([
      expect.objectContaining({ shardId: lost.shardId, reason: "queue-empty" }),
    ]);
    expect(await s.fleetEvents(id)).toEqual([
      expect.objectContaining({
        kind: "shards-redriven",
        message: expect.stringContaining(`re-drove 1 shard (${lost.shardId})`),
      }),
    ]);
    // Every row ran once and is in the output once.
    expect([...runner.ran].sort((a, b) => a - b)).toEqual(EVERY_ROW.map((_, i) => i));
    expect(await s.outputNames(id)).toEqual(EVERY_ROW);
  }, 120_000);

  it("re-drives every undone shard when the work queue was created again after the operation (a restarted local stack)", async () => {
    const s = await scope();
    const id = await s.submit();
    s.scheduler.start();
    const manifest = await s.until(id, "running");

    // A worker finishes some shards, then the stack "restarts": the queue is deleted and
    // created again under the same name (every message in it lost).
    let open = () => {};
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const first = s.startWorker(scriptedRunner((i) => (i < 10 ? 1 : gate)));
    await waitFor("two shards committed", async () =>
      (await s.store.list(keys.shardsPrefix(id))).filter((k) => k.endsWith("done.json")).length >= 2
        ? true
        : undefined,
    );
    await running.pop()!(); // the worker stops (its in-flight shards released)
    open();
    await recreateWorkQueue(s.resources.queues.work);

    s.sweep.start();
    const second = s.startWorker();
    await s.until(id, "succeeded");
    const redriven = (
      await Promise.all(manifest.shards!.map(async (sh) => (await s.redrives(id, sh.id)).length))
    ).reduce((a, b) => a + b, 0);
    // The two committed shards were not sent again; the others were, once each.
    expect(redriven).toBe(6);
    expect(await s.fleetEvents(id)).toEqual([
      expect.objectContaining({
        kind: "shards-redriven",
        message: expect.stringMatching(/^re-drove 6 shards .*created again/),
      }),
    ]);
    expect(first.ran.length).toBeGreaterThanOrEqual(10);
    expect(await s.outputNames(id)).toEqual(EVERY_ROW);
    // Nothing committed was run again.
    expect(second.ran.every((i) => i >= 10)).toBe(true);
  }, 120_000);

  it("never re-drives shards past the dispatch cursor: after a queue was recreated it re-drives the sent ones, the dispatcher sends the rest", async () => {
    // A backlog of two with nothing running: the dispatcher sends shards 0 and 1 only.
    const s = await scope({ minQueued: 2, queuedPerRunning: 0 });
    const id = await s.submit();
    s.scheduler.start();
    const manifest = await s.until(id, "running");
    const shards = manifest.shards!;
    expect(shards).toHaveLength(8);
    await waitFor("two shards dispatched", async () =>
      (await s.scheduler.dispatched(id)) === 2 ? true : undefined,
    );
    // The stack "restarts" before any worker took them: both messages lost.
    await recreateWorkQueue(s.resources.queues.work);

    const made = await s.sweep.pass();
    // Only the two sent shards are the sweep's; the six never sent are left to the dispatcher.
    expect(made).toEqual([
      { shardId: shards[0]!.id, reason: "queue-recreated" },
      { shardId: shards[1]!.id, reason: "queue-recreated" },
    ]);
    expect(await s.scheduler.dispatched(id)).toBe(2);

    const runner = s.startWorker();
    await s.until(id, "succeeded");
    for (const [i, sh] of shards.entries()) {
      expect((await s.redrives(id, sh.id)).length).toBe(i < 2 ? 1 : 0);
    }
    expect(await s.scheduler.dispatched(id)).toBe(8);
    // Every row ran exactly once (nothing doubled by the sweep and the dispatcher both sending).
    expect([...runner.ran].sort((a, b) => a - b)).toEqual(EVERY_ROW.map((_, i) => i));
    expect(await s.outputNames(id)).toEqual(EVERY_ROW);
  }, 120_000);
});
