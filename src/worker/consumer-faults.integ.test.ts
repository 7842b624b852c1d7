/**
 * The consumer's side of fault tolerance against the real local SQS: a heartbeat that finds its
 * receipt handle stale stops the shard and leaves the message to its new owner; an error attempt
 * below the poison limit comes back after its backoff, not at once.
 */
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
import { ShardAttemptFailedError } from "./attempts.ts";
import { Consumer, type ConsumerOptions, type ShardHandler } from "./consumer.ts";

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
          throw new ShardAttemptFailedError("plugin exploded", {
            cause: new Error("plugin exploded"),
            retryDelaySeconds: 2,
            errorAttempts: 1,
          });
        }
      },
    };
    await aws.queue.sendRaw(queues.work, body);
    start(handler);
    await waitFor("the retry", async () => (calls.length === 2 ? true : undefined), 8000);
    // Released with a 2 s delay (the queue's own timeout here is 30 s).
    expect(calls[1]! - calls[0]!).toBeGreaterThanOrEqual(1500);
  });
});
