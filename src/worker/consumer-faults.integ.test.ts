/**
 * The consumer's side of fault tolerance against the real local SQS: each outcome a handler
 * resolves leads to exactly its SQS action (delete, release after n s, dead-letter, nothing); a
 * heartbeat that finds its receipt handle stale stops the shard and leaves the message to its
 * new owner; an error attempt below the poison limit comes back after its backoff, not at once.
 */
import { GetQueueAttributesCommand } from "@aws-sdk/client-sqs";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  freshQueues,
  type LocalAws,
  receiveOne,
  startLocalAws,
  waitForMessage,
} from "../../test/support/local-aws.ts";
import { waitFor } from "../../test/support/wait.ts";
import { untilAbortHandler } from "../../test/support/worker.ts";
import { ShardLostError } from "../shared/errors.ts";
import { silentLogger } from "../shared/logger.ts";
import { Consumer, type ConsumerOptions, type ShardHandler } from "./consumer.ts";
import type { MessageOutcome } from "./shard-outcome.ts";

let aws: LocalAws;
let queues: { work: string; dlq: string };
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  aws = await startLocalAws("consumer-faults");
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

const body = JSON.stringify({ v: 1, operationId: "op-x", shardId: "s000000", start: 0, end: 1 });

function start(handler: ShardHandler, options: Partial<ConsumerOptions> = {}) {
  const consumer = new Consumer(
    { queue: aws.queue, handler, logger: silentLogger() },
    {
      queues,
      market: "spot",
      shardsInFlight: 1,
      visibilityTimeoutSeconds: 30,
      pollWaitSeconds: 1,
      stopGraceMs: 100,
      ...options,
    },
  );
  const running = consumer.run();
  cleanups.push(async () => {
    await consumer.stop({ graceMs: 0 });
    await running.catch(() => {});
  });
  return consumer;
}

describe("Consumer faults", () => {
  it("stops a shard whose heartbeat finds the receipt handle stale, and leaves the message to its new owner", async () => {
    const handler = untilAbortHandler();
    await aws.queue.sendRaw(queues.work, body);
    // Visibility 2 s but a beat only every 3 s: the message reappears before the first beat.
    const consumer = start(handler, { visibilityTimeoutSeconds: 2, heartbeatIntervalMs: 3000 });
    await waitFor("the shard to start", async () => (consumer.inFlight === 1 ? true : undefined));
    const taken = await waitForMessage("the redelivery", aws.queue, queues.work, 6000);
    expect(taken.receiveCount).toBe(2);
    await waitFor("the shard to stop", async () => (consumer.inFlight === 0 ? true : undefined));
    expect(handler.reason).toBeInstanceOf(ShardLostError);
    // Still the new owner's: its receipt handle works, and nobody made it visible.
    await aws.queue.changeVisibility(queues.work, taken.receiptHandle, 30);
    const visible = await receiveOne(aws.queue, queues.work);
    expect(visible).toHaveLength(0);
  });

  it("makes a failed attempt's message visible again only after its backoff", async () => {
    const calls: number[] = [];
    const handler: ShardHandler = {
      process: async () => {
        calls.push(Date.now());
        if (calls.length === 1) {
          return {
            kind: "release",
            why: "failed",
            afterSeconds: 2,
            reason: "plugin exploded",
            errorAttempts: 1,
          };
        }
        return { kind: "delete" };
      },
    };
    await aws.queue.sendRaw(queues.work, body);
    start(handler);
    await waitFor("the retry", async () => (calls.length === 2 ? true : undefined), 8000);
    // Released with a 2 s delay (the queue's own timeout here is 30 s).
    expect(calls[1]! - calls[0]!).toBeGreaterThanOrEqual(1500);
  });
});

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
 * A consumer whose handler answers the k-th delivery with `outcomes[k]` (the last one after
 * that). The queue's visibility is 30 s, so a second delivery within a test proves a release.
 * `settled(n)` resolves once the handler ran n times and its shard has settled.
 */
function scripted(outcomes: MessageOutcome[]) {
  let calls = 0;
  const consumer = start({
    process: async () => {
      calls++;
      return outcomes[Math.min(calls, outcomes.length) - 1]!;
    },
  });
  const settled = (n: number) =>
    waitFor(`delivery ${n} settled`, async () =>
      calls >= n && consumer.inFlight === 0 ? true : undefined,
    );
  return { settled, calls: () => calls };
}

describe("Consumer outcome switch", () => {
  it("delete → DeleteMessage: the message is gone, delivered once", async () => {
    await aws.queue.sendRaw(queues.work, body);
    const run = scripted([{ kind: "delete" }]);
    await run.settled(1);
    expect(await counts(queues.work)).toEqual({ visible: 0, inFlight: 0 });
    expect(run.calls()).toBe(1);
  });

  it("release 0 → ChangeMessageVisibility 0: delivered again at once", async () => {
    await aws.queue.sendRaw(queues.work, body);
    const run = scripted([
      { kind: "release", afterSeconds: 0, why: "interrupted", reason: "worker stopping" },
      { kind: "delete" },
    ]);
    await run.settled(2);
    expect(await counts(queues.work)).toEqual({ visible: 0, inFlight: 0 });
  });

  it("release n → ChangeMessageVisibility n: in flight, neither visible nor deleted", async () => {
    await aws.queue.sendRaw(queues.work, body);
    const run = scripted([{ kind: "release", afterSeconds: 600, why: "failed", reason: "boom" }]);
    await run.settled(1);
    expect(await counts(queues.work)).toEqual({ visible: 0, inFlight: 1 });
  });

  it("dead-letter → the body on the DLQ, the message deleted from the work queue", async () => {
    await aws.queue.sendRaw(queues.work, body);
    const run = scripted([{ kind: "dead-letter", reason: "shard message is not JSON" }]);
    await run.settled(1);
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
    const run = scripted([{ kind: "abandon", reason: "receipt handle invalid" }]);
    await run.settled(1);
    // Neither deleted nor made visible: still invisible under the 30 s receive.
    expect(await counts(queues.work)).toEqual({ visible: 0, inFlight: 1 });
  });
});
