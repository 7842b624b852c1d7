/**
 * A whole worker (consumer + processor + interruption watcher) in process, on the real local
 * SQS/S3 and a real local IMDSv2 peer: a spot interruption notice drains it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  freshQueues,
  type LocalAws,
  startLocalAws,
  waitForMessage,
} from "../../test/support/local-aws.ts";
import { writeManifest } from "../../test/support/manifests.ts";
import { waitFor } from "../../test/support/wait.ts";
import { scriptedRunner, textRows, writeSlice } from "../../test/support/worker.ts";
import { type LocalImds, startLocalImds } from "../local/imds.ts";
import { keys } from "../shared/keys.ts";
import { silentLogger } from "../shared/logger.ts";
import { attemptSchema, checkpointSchema, shardDoneSchema } from "../shared/schemas/shard.ts";
import { workerReportSchema } from "../shared/schemas/worker-report.ts";
import { chunkListProblem } from "./checkpoint.ts";
import { Worker } from "./worker.ts";

let aws: LocalAws;
let imds: LocalImds;

beforeAll(async () => {
  aws = await startLocalAws("worker-test");
  imds = await startLocalImds({ instanceId: "i-spot", market: "spot" });
});
afterAll(async () => {
  await imds?.close();
  await aws?.close();
});

describe("Worker", () => {
  it("drains on a spot notice: final checkpoint, attempt interrupted, message visible again within seconds", async () => {
    const queues = await freshQueues(aws);
    const op = "op-notice";
    const ROWS = 400;
    await writeManifest(
      aws.store,
      op,
      ["name"],
      { name: "transform", options: { module: "noop" } },
      {
        checkpoint: { everyRows: 25, everySeconds: 60 },
      },
    );
    const message = await writeSlice(aws.store, op, "s000000", 0, textRows(ROWS));
    await aws.queue.sendShards(queues.work, [message]);

    // Rows finish in order, one every 10 ms: 4 s for the shard.
    const first = scriptedRunner((i) => 10 * i);
    const worker = new Worker(
      {
        store: aws.store,
        queue: aws.queue,
        logger: silentLogger(),
        createRunner: async () => first,
      },
      {
        instanceId: "i-spot",
        market: "spot",
        pluginDir: ".",
        queues,
        pollWaitSeconds: 1,
        visibilityTimeoutSeconds: 30,
        drainGraceMs: 300,
        imds: { endpoint: imds.endpoint, pollIntervalMs: 100 },
        // Checkpoint every 25 rows whatever this machine's S3 write time (the budget would
        // stretch the interval on a loaded machine; it has tests of its own).
        checkpointBudget: 1,
      },
    );
    const running = worker.run();
    await waitFor("a checkpoint past row 50", async () => {
      const c = await aws.store.getJson(keys.checkpoint(op, "s000000"), checkpointSchema);
      return (c?.cursor ?? 0) >= 50 ? true : undefined;
    });
    imds.noticeInterruption(new Date(Date.now() + 120_000));

    const again = await waitForMessage(
      "the message to be visible again",
      aws.queue,
      queues.work,
      15_000,
    );
    const requeueMs = Date.now() - worker.notice!.seenAt;
    console.info(`requeue latency after the notice was seen: ${requeueMs} ms`);
    expect(requeueMs).toBeLessThan(15_000);
    await running;
    expect(worker.consumer.state).toBe("stopped");
    expect(worker.watcher?.state).toBe("noticed");

    const checkpoint = await aws.store.getJson(keys.checkpoint(op, "s000000"), checkpointSchema);
    const [attemptKey] = await aws.store.list(keys.attemptsPrefix(op, "s000000"));
    const attempt = await aws.store.getJson(attemptKey!, attemptSchema);
    expect(attempt).toMatchObject({ cause: "interrupted", instanceId: "i-spot", market: "spot" });
    // The final checkpoint holds every finished row, and the rows stopped well before the end.
    expect(checkpoint?.cursor).toBe(first.ran.length);
    expect(first.ran.length).toBeLessThan(ROWS);
    expect(chunkListProblem(checkpoint!.chunks, 0, checkpoint!.cursor)).toBeUndefined();

    // The next worker resumes from the checkpoint: no row runs twice.
    await aws.queue.changeVisibility(queues.work, again.receiptHandle, 0);
    const second = scriptedRunner(() => 0);
    const next = new Worker(
      {
        store: aws.store,
        queue: aws.queue,
        logger: silentLogger(),
        createRunner: async () => second,
      },
      { instanceId: "i-next", market: "on-demand", pluginDir: ".", queues, pollWaitSeconds: 1 },
    );
    const nextRunning = next.run();
    const done = await waitFor("the commit", () =>
      aws.store.getJson(keys.done(op, "s000000"), shardDoneSchema),
    );
    await next.stop();
    await nextRunning;
    expect(done.instanceId).toBe("i-next");
    expect(first.ran.length + second.ran.length).toBe(ROWS);
    expect(chunkListProblem(done.chunks, 0, ROWS)).toBeUndefined();
  });

  it("reports up after its first receive, also with nothing to receive (idle time counts from it)", async () => {
    const queues = await freshQueues(aws);
    const instanceId = "ip-10-0-0-9.ec2.internal-77";
    expect(await aws.store.exists(keys.workerReport(instanceId))).toBe(false);
    const worker = new Worker(
      { store: aws.store, queue: aws.queue, logger: silentLogger() },
      { instanceId, market: "spot", pluginDir: ".", queues, pollWaitSeconds: 1 },
    );
    const running = worker.run();
    const report = await waitFor("the worker report", () =>
      aws.store.getJson(keys.workerReport(instanceId), workerReportSchema),
    );
    await worker.stop();
    await running;
    expect(report).toMatchObject({ v: 1, instanceId, market: "spot" });
  });

  it("asks its metadata endpoint only once it polls the work queue (the local stack's `instancesUp`)", async () => {
    const queues = await freshQueues(aws);
    const own = await startLocalImds({ instanceId: "i-up", market: "spot" });
    let receives = 0;
    const queue = Object.create(aws.queue) as typeof aws.queue;
    queue.receive = (...args) => {
      receives++;
      return aws.queue.receive(...args);
    };
    const worker = new Worker(
      { store: aws.store, queue, logger: silentLogger() },
      {
        instanceId: "i-up",
        market: "spot",
        pluginDir: ".",
        queues,
        pollWaitSeconds: 1,
        imds: { endpoint: own.endpoint, pollIntervalMs: 100 },
      },
    );
    const running = worker.run();
    try {
      await own.asked;
      // What `asked` stands for: the consumer was polling before the first metadata request.
      expect(receives).toBeGreaterThan(0);
      expect(worker.consumer.state).toBe("running");
    } finally {
      await worker.stop();
      await running;
      await own.close();
    }
  });
});
