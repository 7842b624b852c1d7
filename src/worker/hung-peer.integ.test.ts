/**
 * A worker whose S3 peer hangs: its commit reaches the real local server, which writes it, and
 * the answer never comes (a fault-injecting proxy keeps the connection open and silent). The
 * client's idle timeout fails that attempt, the SDK retries, meets its own write as a 412, and
 * the shard is committed once and its message deleted. Without the timeout the worker waits
 * forever. (src/shared/aws-timeouts.integ.test.ts has the client-level cases.)
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FaultProxy } from "../../test/support/fault-proxy.ts";
import { freshQueues, type LocalAws, messagesOn } from "../../test/support/local-aws.ts";
import { writeManifest } from "../../test/support/manifests.ts";
import { type ProxiedAws, startProxiedAws } from "../../test/support/proxied-aws.ts";
import { waitFor } from "../../test/support/wait.ts";
import { scriptedRunner, textRows, writeSlice } from "../../test/support/worker.ts";
import { keys } from "../shared/keys.ts";
import { silentLogger } from "../shared/logger.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import { attemptSchema, shardDoneSchema } from "../shared/schemas/shard.ts";
import { Worker } from "./worker.ts";

let env: ProxiedAws;
let aws: LocalAws;
let proxy: FaultProxy;
let store: ObjectStore;
beforeAll(async () => {
  // Short, so the hung attempt gives up quickly; the test waits for events, not for times.
  env = await startProxiedAws("hung-peer", { timeouts: { connectMs: 2_000, idleMs: 1_000 } });
  ({ aws, proxy, store } = env);
});
afterAll(async () => {
  await env?.close();
});

describe("a worker on a hung S3 peer", () => {
  it("a worker whose commit is never answered still commits its shard, once, and deletes the message", async () => {
    const queues = await freshQueues(aws);
    const op = "op-hang";
    await writeManifest(aws.store, op, ["name"], {
      name: "transform",
      options: { module: "noop" },
    });
    await aws.queue.sendShards(queues.work, [
      await writeSlice(aws.store, op, "s000000", 0, textRows(20)),
    ]);
    // The commit reaches the server, which writes it; its answer never comes.
    proxy.hang((r) => r.method === "PUT" && r.url.includes(`${op}/shards/s000000/done.json`), 1, {
      afterServer: true,
    });
    const runner = scriptedRunner(() => 0);
    const worker = new Worker(
      { store, queue: aws.queue, logger: silentLogger(), createRunner: async () => runner },
      { instanceId: "i-hang", market: "spot", pluginDir: ".", queues, pollWaitSeconds: 1 },
    );
    const running = worker.run();
    const attempt = await waitFor("the attempt to end", async () => {
      const [key] = await aws.store.list(keys.attemptsPrefix(op, "s000000"));
      const a = key ? await aws.store.getJson(key, attemptSchema) : undefined;
      return a && a.cause !== "running" ? a : undefined;
    });
    await waitFor("the message deleted", async () =>
      (await messagesOn(aws, queues.work)) === 0 ? true : undefined,
    );
    await worker.stop();
    await running;
    expect(proxy.hung.some((r) => r.url.includes(`${op}/shards/s000000/done.json`))).toBe(true);
    expect(attempt.cause).toBe("completed");
    const done = await aws.store.getJson(keys.done(op, "s000000"), shardDoneSchema);
    expect(done).toMatchObject({ instanceId: "i-hang", rows: 20 });
    expect(runner.ran).toHaveLength(20);
  });
});
