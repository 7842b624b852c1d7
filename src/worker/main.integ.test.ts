import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnComponent } from "../local/processes.ts";
import { keys } from "../shared/keys.ts";
import { shardDoneSchema } from "../shared/schemas/shard.ts";
import {
  freshQueues,
  type LocalAws,
  startLocalAws,
  waitFor,
  writeManifest,
  writeSlice,
} from "./test-support.ts";

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
        AWS_ENDPOINT_URL: aws.server.endpoint,
        AWS_REGION: "us-east-1",
        AWS_ACCESS_KEY_ID: "test",
        AWS_SECRET_ACCESS_KEY: "test",
        SHARDFLEET_BUCKET: aws.resources.bucket,
        SHARDFLEET_WORK_QUEUE_URL: queues.work,
        SHARDFLEET_DLQ_URL: queues.dlq,
        SHARDFLEET_INSTANCE_ID: "local-main-1",
        SHARDFLEET_MARKET: "spot",
        SHARDFLEET_POLL_WAIT_S: "1",
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
    const lines = (await readFile(worker.logFile!, "utf8"))
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.find((l) => l.msg === "shard committed")).toMatchObject({
      component: "worker",
      instanceId: "local-main-1",
      market: "spot",
      operationId: op,
      shardId: "s000000",
    });
    expect(lines.at(-1)).toMatchObject({ msg: "worker stopped", state: "stopped" });
  });
});
