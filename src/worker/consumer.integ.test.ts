import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  freshQueues,
  type LocalAws,
  messagesOn,
  receiveOne,
  startLocalAws,
} from "../../test/support/local-aws.ts";
import { writeManifest } from "../../test/support/manifests.ts";
import { waitFor } from "../../test/support/wait.ts";
import { untilAbortHandler, writeSlice } from "../../test/support/worker.ts";
import { keys } from "../shared/keys.ts";
import { silentLogger } from "../shared/logger.ts";
import { resultRowSchema } from "../shared/schemas/cells.ts";
import { shardDoneSchema } from "../shared/schemas/shard.ts";
import { Consumer, type ShardHandler } from "./consumer.ts";
import { ShardProcessor } from "./shard-processor.ts";

const pluginDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../plugins");

let aws: LocalAws;
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  aws = await startLocalAws("consumer-test");
});

let queues: { work: string; dlq: string };
beforeEach(async () => {
  queues = await freshQueues(aws);
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

afterAll(async () => {
  await aws?.close();
});

function startConsumer(
  handler: ShardHandler,
  options: { shardsInFlight?: number; queue?: string } = {},
) {
  const consumer = new Consumer(
    {
      queue: aws.queue,
      handler,
      logger: silentLogger(),
    },
    {
      queues: {
        work: options.queue ?? queues.work,
        dlq: queues.dlq,
      },
      market: "spot",
      shardsInFlight: options.shardsInFlight ?? 2,
      visibilityTimeoutSeconds: 30,
      pollWaitSeconds: 1,
      stopGraceMs: 5000,
    },
  );
  const running = consumer.run();
  cleanups.push(async () => {
    await consumer.stop();
    await running.catch(() => {});
  });
  return { consumer, running };
}

function realProcessor() {
  const processor = new ShardProcessor(
    { store: aws.store, logger: silentLogger() },
    { instanceId: "i-consumer", market: "spot", pluginDir },
  );
  cleanups.push(() => processor.close());
  return processor;
}

describe("Consumer with the shard processor", () => {
  it("processes every shard on the queue, commits it and deletes its message", async () => {
    const op = "op-run";
    await writeManifest(aws.store, op, ["name", "n"], {
      name: "transform",
      options: { module: "score", options: { rounds: 2 } },
    });
    const messages = await Promise.all(
      [0, 1, 2].map((k) =>
        writeSlice(aws.store, op, `s00000${k}`, k * 3, [
          [`a${k}`, 1],
          [`b${k}`, 2],
          [`c${k}`, 3],
        ]),
      ),
    );
    await aws.queue.sendShards(queues.work, messages);
    const { consumer } = startConsumer(realProcessor());
    expect(consumer.state).toBe("running");

    for (const m of messages) {
      const done = await waitFor(`done.json of ${m.shardId}`, () =>
        aws.store.getJson(keys.done(op, m.shardId), shardDoneSchema),
      );
      expect(done).toMatchObject({ rows: 3, errorRows: 0, columns: ["score"] });
      const chunk = (await aws.store.getText(done.chunks[0]!.key)) ?? "";
      const rows = chunk
        .split("\n")
        .filter(Boolean)
        .map((l) => resultRowSchema.parse(JSON.parse(l)));
      expect(rows.map((r) => r.i)).toEqual([m.start, m.start + 1, m.start + 2]);
      expect(rows.every((r) => /^[0-9a-f]{16}$/.test(String(r.r?.score)))).toBe(true);
    }
    await waitFor("the work queue to empty", async () =>
      (await messagesOn(aws, queues.work)) === 0 ? true : undefined,
    );
    await consumer.stop();
    expect(consumer.state).toBe("stopped");
  });

  it("commits a shard delivered twice once, and deletes both messages", async () => {
    const op = "op-dup";
    await writeManifest(aws.store, op, ["name"], {
      name: "transform",
      options: { module: "noop" },
    });
    const message = await writeSlice(aws.store, op, "s000000", 0, [["x"], ["y"]]);
    await aws.queue.sendShards(queues.work, [message, message]);
    startConsumer(realProcessor());

    await waitFor("both deliveries to be deleted", async () =>
      (await messagesOn(aws, queues.work)) === 0 ? true : undefined,
    );
    expect(await aws.store.list(keys.done(op, "s000000"))).toHaveLength(1);
    expect(await aws.store.list(keys.chunksPrefix(op, "s000000"))).toHaveLength(1);
  });

  it("moves an invalid message to the DLQ and keeps going", async () => {
    const op = "op-dlq";
    await writeManifest(aws.store, op, ["name"], {
      name: "transform",
      options: { module: "noop" },
    });
    const good = await writeSlice(aws.store, op, "s000000", 0, [["x"]]);
    await aws.queue.sendRaw(queues.work, "{not json");
    await aws.queue.sendRaw(queues.work, JSON.stringify({ v: 1, hello: "world" }));
    await aws.queue.sendShards(queues.work, [good]);
    startConsumer(realProcessor());

    await waitFor("the good shard's commit", () =>
      aws.store.getJson(keys.done(op, "s000000"), shardDoneSchema),
    );
    const dead = await waitFor("two messages on the DLQ", async () => {
      const all = await aws.queue.receive(queues.dlq, {
        max: 10,
        waitSeconds: 1,
        visibilityTimeout: 30,
      });
      return all.length === 2 ? all : undefined;
    });
    expect(dead.map((m) => m.body).sort()).toEqual(
      [JSON.stringify({ v: 1, hello: "world" }), "{not json"].sort(),
    );
    await waitFor("the work queue to empty", async () =>
      (await messagesOn(aws, queues.work)) === 0 ? true : undefined,
    );
  });
});

describe("Consumer lifecycle", () => {
  const shardBody = JSON.stringify({
    v: 1,
    operationId: "op-x",
    shardId: "s000000",
    start: 0,
    end: 1,
  });

  it("makes a failed shard's message visible again at once, so it is retried", async () => {
    let calls = 0;
    const handler: ShardHandler = {
      process: async () => {
        calls++;
        if (calls === 1) throw new Error("S3 hiccup");
        return { kind: "delete" };
      },
    };
    await aws.queue.sendRaw(queues.work, shardBody);
    startConsumer(handler);
    // Visibility is 30 s: a second call within the wait proves the message was released.
    await waitFor("the retry", async () => (calls >= 2 ? true : undefined));
    await waitFor("the message to be deleted", async () =>
      (await messagesOn(aws, queues.work)) === 0 ? true : undefined,
    );
    expect(calls).toBe(2);
  });

  it("runs at most shardsInFlight shards at once", async () => {
    let active = 0;
    let maxActive = 0;
    let finished = 0;
    const handler: ShardHandler = {
      process: async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        await new Promise((r) => setTimeout(r, 50));
        active--;
        finished++;
        return { kind: "delete" };
      },
    };
    for (let k = 0; k < 6; k++) await aws.queue.sendRaw(queues.work, shardBody);
    startConsumer(handler, { shardsInFlight: 2 });
    await waitFor("six shards", async () => (finished === 6 ? true : undefined));
    expect(maxActive).toBe(2);
  });

  it("on stop, lets a shard finish within the grace period", async () => {
    let finished = false;
    const handler: ShardHandler = {
      process: async () => {
        await new Promise((r) => setTimeout(r, 300));
        finished = true;
        return { kind: "delete" };
      },
    };
    await aws.queue.sendRaw(queues.work, shardBody);
    const { consumer, running } = startConsumer(handler);
    await waitFor("the shard to start", async () => (consumer.inFlight === 1 ? true : undefined));
    await consumer.stop({ graceMs: 5000 });
    await running;
    expect(finished).toBe(true);
    expect(consumer.state).toBe("stopped");
    expect(await messagesOn(aws, queues.work)).toBe(0);
  });

  it("on stop, aborts a shard that outlives the grace period and releases its message", async () => {
    const handler = untilAbortHandler();
    await aws.queue.sendRaw(queues.work, shardBody);
    const { consumer } = startConsumer(handler);
    await waitFor("the shard to start", async () => (consumer.inFlight === 1 ? true : undefined));
    await consumer.stop({ graceMs: 100 });
    expect(consumer.state).toBe("stopped");
    expect(String(handler.reason)).toMatch(/stopping/);
    // Released with visibility 0: receivable at once, although the queue's timeout is 30 s.
    const again = await receiveOne(aws.queue, queues.work);
    expect(again.map((m) => m.body)).toEqual([shardBody]);
  });

  it("fails when its queue does not exist", async () => {
    const missing = queues.work.replace(/[^/]+$/, "no-such-queue");
    const { consumer, running } = startConsumer(
      { process: async () => ({ kind: "delete" }) },
      { queue: missing },
    );
    await expect(running).rejects.toThrow();
    expect(consumer.state).toBe("failed");
  });
});

describe("straggler queue", () => {
  async function run(market: "spot" | "on-demand") {
    const all = await freshQueues(aws);
    const seen: Array<{ body: string }> = [];
    const handler: ShardHandler = {
      async process(body) {
        seen.push({ body });
        return { kind: "delete" };
      },
    };
    const consumer = new Consumer(
      { queue: aws.queue, handler, logger: silentLogger() },
      {
        queues: { work: all.work, straggler: all.straggler, dlq: all.dlq },
        market,
        shardsInFlight: 1,
        visibilityTimeoutSeconds: 30,
        pollWaitSeconds: 1,
        stopGraceMs: 5000,
      },
    );
    // Both queues hold a message before the consumer starts: which one it takes first tells.
    await aws.queue.sendRaw(all.work, "from-work");
    await aws.queue.sendRaw(all.straggler, "from-straggler");
    const running = consumer.run();
    cleanups.push(async () => {
      await consumer.stop();
      await running.catch(() => {});
    });
    const want = market === "on-demand" ? 2 : 1;
    await waitFor("messages handled", async () => (seen.length >= want ? true : undefined), 10_000);
    await new Promise((r) => setTimeout(r, 1500)); // time to (wrongly) take more
    return { seen: seen.map((s) => s.body), all };
  }

  it("on-demand workers take the straggler copy first, then the work queue", async () => {
    const { seen } = await run("on-demand");
    expect(seen).toEqual(["from-straggler", "from-work"]);
  });

  it("spot workers never poll the straggler queue", async () => {
    const { seen, all } = await run("spot");
    expect(seen).toEqual(["from-work"]);
    const left = await aws.queue.receive(all.straggler, {
      max: 10,
      waitSeconds: 0,
      visibilityTimeout: 0,
    });
    expect(left.map((m) => m.body)).toEqual(["from-straggler"]);
  });
});
