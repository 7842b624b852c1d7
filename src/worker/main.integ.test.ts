import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  freshQueues,
  type LocalAws,
  localAwsEnv,
  receiveOne,
  startLocalAws,
} from "../../test/support/local-aws.ts";
import { writeManifest } from "../../test/support/manifests.ts";
import { waitFor } from "../../test/support/wait.ts";
import { logLines, textRows, writeSlice } from "../../test/support/worker.ts";
import { startLocalImds } from "../local/imds.ts";
import { spawnComponent } from "../local/processes.ts";
import { keys } from "../shared/keys.ts";
import { attemptSchema, checkpointSchema, shardDoneSchema } from "../shared/schemas/shard.ts";
import { VERSION } from "../shared/version.ts";

let aws: LocalAws;
let logDir: string;

beforeAll(async () => {
  aws = await startLocalAws("main-test");
  logDir = await mkdtemp(path.join(tmpdir(), "shardfleet-main-"));
});

afterAll(async () => {
  await aws?.close();
  await rm(logDir, { recursive: true, force: true });
});

/** Runs the worker entry point to its exit; returns the code and everything it printed. */
async function runToExit(name: string, env: Record<string, string>) {
  const worker = spawnComponent("worker", { name, env, logDir });
  const code = await worker.exited;
  return { code, output: await readFile(worker.logFile!, "utf8") };
}

describe("worker main", () => {
  it.each([
    [{ SHARDFLEET_SHARDS_IN_FLIGHT: "lots" }, /invalid setting SHARDFLEET_SHARDS_IN_FLIGHT="lots"/],
    [{ SHARDFLEET_SHARDS_IN_FLIGT: "2" }, /unknown setting SHARDFLEET_SHARDS_IN_FLIGT/],
    [{}, /missing setting SHARDFLEET_WORK_QUEUE_URL/],
  ])("refuses bad settings with one line and exit 78 (%o)", async (env, message) => {
    const { code, output } = await runToExit(`bad-${Object.keys(env).join("-") || "none"}`, env);
    expect(code).toBe(78);
    expect(output.trim().split("\n")).toHaveLength(1);
    expect(output).toMatch(message);
    expect(output).not.toMatch(/\n\s+at /);
  });

  it("processes a shard, then drains and exits 0 on SIGTERM", async () => {
    const queues = await freshQueues(aws);
    const op = "op-main";
    await writeManifest(aws.store, op, ["name"], {
      name: "transform",
      options: { module: "noop" },
    });
    const message = await writeSlice(aws.store, op, "s000000", 0, [["a"], ["b"]]);
    await aws.queue.sendShards(queues.work, [message]);

    const worker = spawnComponent("worker", {
      name: "live",
      logDir,
      env: {
        ...localAwsEnv(aws),
        SHARDFLEET_WORK_QUEUE_URL: queues.work,
        SHARDFLEET_DLQ_URL: queues.dlq,
        SHARDFLEET_INSTANCE_ID: "local-main-1",
        SHARDFLEET_MARKET: "spot",
        SHARDFLEET_POLL_WAIT_S: "1",
        AWS_EC2_METADATA_DISABLED: "true",
      },
    });
    try {
      const done = await waitFor(
        "the shard's commit",
        () => aws.store.getJson(keys.done(op, "s000000"), shardDoneSchema),
        15_000,
      );
      expect(done).toMatchObject({ instanceId: "local-main-1", rows: 2 });
      expect(await worker.stop(10_000)).toBe(0);
    } finally {
      await worker.kill();
    }
    const lines = await logLines(worker);
    expect(lines.find((l) => l.msg === "shard committed")).toMatchObject({
      component: "worker",
      instanceId: "local-main-1",
      market: "spot",
      operationId: op,
      shardId: "s000000",
    });
    expect(lines.at(-1)).toMatchObject({ msg: "worker stopped", state: "stopped" });
    expect(lines[0]).toMatchObject({
      msg: "worker starting",
      version: VERSION,
      node: process.version,
      instanceId: "local-main-1",
    });
  });

  it("on a spot interruption notice: final checkpoint, message visible again, attempt interrupted, exit 0", async () => {
    const queues = await freshQueues(aws);
    const imds = await startLocalImds({ instanceId: "local-notice-1", market: "spot" });
    const pluginDir = path.join(logDir, "plugins");
    await mkdir(pluginDir, { recursive: true });
    // 20 ms a row (waiting, not burning CPU): the shard lasts far longer than the test.
    await writeFile(
      path.join(pluginDir, "busy.mjs"),
      "export default () => new Promise((r) => setTimeout(() => r({ ok: true }), 20));",
    );
    const op = "op-notice";
    await writeManifest(
      aws.store,
      op,
      ["name"],
      { name: "transform", options: { module: "busy", batchSize: 10 } },
      { checkpoint: { everyRows: 20, everySeconds: 60 } },
    );
    await aws.queue.sendShards(queues.work, [
      await writeSlice(aws.store, op, "s000000", 0, textRows(2000)),
    ]);
    const worker = spawnComponent("worker", {
      name: "notice",
      logDir,
      env: {
        ...localAwsEnv(aws),
        AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.endpoint,
        SHARDFLEET_WORK_QUEUE_URL: queues.work,
        SHARDFLEET_INSTANCE_ID: "local-notice-1",
        SHARDFLEET_MARKET: "spot",
        SHARDFLEET_POLL_WAIT_S: "1",
        SHARDFLEET_PLUGIN_DIR: pluginDir,
        SHARDFLEET_INTERRUPTION_POLL_S: "0.2",
        SHARDFLEET_DRAIN_GRACE_S: "0.2",
      },
    });
    try {
      await waitFor(
        "a checkpoint",
        () => aws.store.getJson(keys.checkpoint(op, "s000000"), checkpointSchema),
        15_000,
      );
      imds.noticeInterruption(new Date(Date.now() + 120_000));
      const timeout = new Promise((r) => setTimeout(() => r("still running"), 15_000).unref());
      expect(await Promise.race([worker.exited, timeout])).toBe(0);
    } finally {
      await worker.kill();
      await imds.close();
    }
    const again = await receiveOne(aws.queue, queues.work);
    expect(again).toHaveLength(1);
    expect(await aws.store.exists(keys.done(op, "s000000"))).toBe(false);
    const [attemptKey] = await aws.store.list(keys.attemptsPrefix(op, "s000000"));
    expect(await aws.store.getJson(attemptKey!, attemptSchema)).toMatchObject({
      cause: "interrupted",
    });
    const lines = await logLines(worker);
    expect(lines.find((l) => l.msg === "interruption notice; draining")).toBeDefined();
    const requeued = lines.find((l) => l.msg === "shard interrupted; its message is visible again");
    expect(requeued?.requeueMs).toEqual(expect.any(Number));
    expect(lines.at(-1)).toMatchObject({ msg: "worker stopped", state: "stopped" });
  });
});
