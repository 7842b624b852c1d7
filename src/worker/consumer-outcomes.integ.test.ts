/**
 * The consumer's outcome switch against the real local SQS: each outcome a handler resolves
 * leads to exactly its SQS action (delete, release after n s, dead-letter, nothing).
 */
import { GetQueueAttributesCommand } from "@aws-sdk/client-sqs";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { silentLogger } from "../shared/logger.ts";
import { Consumer, type ShardHandler } from "./consumer.ts";
import type { MessageOutcome } from "./shard-outcome.ts";
import { freshQueues, type LocalAws, startLocalAws, waitFor } from "./test-support.ts";

let aws: LocalAws;
let queues: { work: string; dlq: string };
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  aws = await startLocalAws("consumer-outcomes");
});
beforeEach(async () => {
  queues = await freshQueues(aws);
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(async () => {
  await aws?.close();
});

const body = JSON.stringify({ v: 1, operationId: "op-o", shardId: "s000000", start: 0, end: 1 });

/** Visible and in-flight messages on a queue, apart. */
async function counts(queueUrl: string): Promise<{ visible: number; inFlight: number }> {
  const out = await aws.clients.sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    }),
  );
  return {
    visible: Number(out.Attributes?.ApproximateNumberOfMessages ?? 0),
    inFlight: Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0),
  };
}

/**
 * Runs a consumer whose handler answers the k-th delivery with `outcomes[k]` (the last one
 * after that), and records when each delivery came. The queue's visibility is 30 s, so a
 * second delivery within a test proves a release.
 */
function start(outcomes: MessageOutcome[]) {
  const calls: number[] = [];
  const handler: ShardHandler = {
    process: async () => {
      calls.push(Date.now());
      return outcomes[Math.min(calls.length, outcomes.length) - 1]!;
    },
  };
  const consumer = new Consumer(
    { queue: aws.queue, handler, logger: silentLogger() },
    {
      queues,
      market: "spot",
      shardsInFlight: 1,
      visibilityTimeoutSeconds: 30,
      pollWaitSeconds: 1,
      stopGraceMs: 100,
      heartbeat: false,
    },
  );
  const running = consumer.run();
  cleanups.push(async () => {
    await consumer.stop({ graceMs: 0 });
    await running.catch(() => {});
  });
  return { consumer, calls };
}

/** Resolves once the handler ran `n` times and its shard has settled. */
const settled = (run: ReturnType<typeof start>, n: number) =>
  waitFor(`delivery ${n} settled`, async () =>
    run.calls.length >= n && run.consumer.inFlight === 0 ? true : undefined,
  );

describe("Consumer outcome switch", () => {
  it("delete → DeleteMessage: the message is gone, delivered once", async () => {
    await aws.queue.sendRaw(queues.work, body);
    const run = start([{ kind: "delete" }]);
    await settled(run, 1);
    expect(await counts(queues.work)).toEqual({ visible: 0, inFlight: 0 });
    expect(run.calls).toHaveLength(1);
  });

  it("release 0 → ChangeMessageVisibility 0: delivered again at once", async () => {
    await aws.queue.sendRaw(queues.work, body);
    const run = start([
      { kind: "release", afterSeconds: 0, why: "interrupted", reason: "worker stopping" },
      { kind: "delete" },
    ]);
    await settled(run, 2);
    expect(await counts(queues.work)).toEqual({ visible: 0, inFlight: 0 });
  });

  it("release n → ChangeMessageVisibility n: delivered again only after n s", async () => {
    await aws.queue.sendRaw(queues.work, body);
    const run = start([
      { kind: "release", afterSeconds: 3, why: "failed", reason: "plugin exploded" },
      { kind: "delete" },
    ]);
    await settled(run, 1);
    // Released with its delay: in flight, not visible, not deleted.
    expect(await counts(queues.work)).toEqual({ visible: 0, inFlight: 1 });
    await settled(run, 2);
    expect(run.calls[1]! - run.calls[0]!).toBeGreaterThanOrEqual(2500);
  });

  it("dead-letter → the body on the DLQ, the message deleted from the work queue", async () => {
    await aws.queue.sendRaw(queues.work, body);
    const run = start([{ kind: "dead-letter", reason: "shard message is not JSON" }]);
    await settled(run, 1);
    expect(await counts(queues.work)).toEqual({ visible: 0, inFlight: 0 });
    const dead = await aws.queue.receive(queues.dlq, {
      max: 10,
      waitSeconds: 1,
      visibilityTimeout: 30,
    });
    expect(dead.map((m) => m.body)).toEqual([body]);
  });

  it("abandon → no call: the message stays in flight for its new owner", async () => {
    await aws.queue.sendRaw(queues.work, body);
    const run = start([{ kind: "abandon", reason: "receipt handle invalid" }]);
    await settled(run, 1);
    // Neither deleted nor made visible: still invisible under the 30 s receive.
    expect(await counts(queues.work)).toEqual({ visible: 0, inFlight: 1 });
  });
});
