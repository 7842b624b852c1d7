/**
 * The local stack keeps its work (issue 12 item 6): `shardfleet local`, stopped with SIGTERM or
 * killed with SIGKILL and started again on the same data folder, still serves a finished
 * operation's result and completes one that was running, every row exactly once; a killed
 * stack leaves no scheduler or worker behind (checked by pid).
 *
 * The second test needs the scheduler's self-healing sweep (issue 12 item 2): queues are not
 * kept, and the sweep re-drives the undone shards of an operation whose queue was re-created.
 */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient } from "../../src/cli/api-client.ts";
import { waitForOperation } from "../../src/cli/wait.ts";
import { childPids, type LocalCli, startLocalCli } from "../support/local-cli.ts";
import { downloadRows } from "../support/local-stack.ts";
import { PACED_DOUBLE_PLUGIN, writeNumbersCsv, writePlugin } from "../support/plugins.ts";
import { isRunning } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

let dir: string;
let pluginDir: string;
const started: LocalCli[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "shardfleet-local-restart-"));
  pluginDir = await writePlugin(dir, "paced.mjs", PACED_DOUBLE_PLUGIN);
});

afterAll(async () => {
  for (const local of started) {
    for (const pid of childPids(local.child.pid ?? 0)) process.kill(pid, "SIGKILL");
    local.child.kill("SIGKILL");
  }
  await rm(dir, { recursive: true, force: true });
}, 30_000);

/** `shardfleet local` on `dataDir` with `workers` instances. */
async function local(dataDir: string, workers: number): Promise<LocalCli> {
  const cli = await startLocalCli(
    [
      "--workers",
      String(workers),
      "--aws-port",
      "0",
      "--api-port",
      "0",
      "--log-dir",
      path.join(dir, "logs"),
      "--data-dir",
      dataDir,
    ],
    { SHARDFLEET_PLUGIN_DIR: pluginDir, SHARDFLEET_POLL_WAIT_S: "1" },
  );
  started.push(cli);
  return cli;
}

/** The stack's scheduler and workers, once all `expected` of them run. */
function components(cli: LocalCli, expected: number): Promise<number[]> {
  return waitFor("the stack's components", async () => {
    const pids = childPids(cli.child.pid ?? 0);
    return pids.length >= expected ? pids : undefined;
  });
}

async function noneRunning(pids: readonly number[]): Promise<void> {
  await waitFor(
    `processes ${pids.join(", ")} to end`,
    async () => (pids.some(isRunning) ? undefined : true),
    30_000,
  );
}

const spec = (rowMs: number, shardSize: number) => ({
  task: { name: "transform", options: { module: "paced", options: { rowMs } } },
  shardSize,
  csvValues: "text",
});

/** Every input row exactly once, in order, with its result. */
function expectEveryRowOnce(rows: unknown[][], count: number): void {
  expect(rows[0]?.slice(0, 2)).toEqual(["n", "double"]);
  expect(rows.slice(1).map((r) => [r[0], r[1]])).toEqual(
    Array.from({ length: count }, (_, n) => [String(n), n * 2]),
  );
}

describe("the local stack keeps its work across restarts", () => {
  it("serves a finished operation's result after SIGTERM and after SIGKILL; a killed stack leaves no process", async () => {
    const dataDir = path.join(dir, "data-finished");
    const input = path.join(dir, "finished.csv");
    await writeNumbersCsv(input, 40);

    const first = await local(dataDir, 1);
    expect(first.out.stdout).toMatch(/data {13}\S+ \(0 objects loaded/);
    const client1 = new ApiClient(first.apiUrl);
    const { id } = await client1.submit(input, spec(0, 10));
    const done = await waitForOperation(client1, id, { progress: false, intervalMs: 250 });
    expect(done.status).toBe("succeeded");
    const rows = await downloadRows(client1, id);
    expectEveryRowOnce(rows, 40);
    const firstPids = await components(first, 2);
    first.child.kill("SIGTERM");
    expect(await first.exited).toBe(0);
    await noneRunning(firstPids);

    const second = await local(dataDir, 1);
    expect(second.out.stdout).toMatch(/data {13}\S+ \([1-9]\d* objects loaded/);
    const client2 = new ApiClient(second.apiUrl);
    expect((await client2.get(id)).status).toBe("succeeded");
    expect(await downloadRows(client2, id)).toEqual(rows);
    const secondPids = await components(second, 2);
    // One worker each time, named apart: the folder's records never mix up two starts' instances.
    const workerLogs = (await readdir(path.join(dir, "logs"))).filter((f) =>
      /^local-[a-z0-9]+-\d{3}\.log$/.test(f),
    );
    expect(workerLogs).toHaveLength(2);
    second.child.kill("SIGKILL");
    await second.exited;
    await noneRunning(secondPids);

    const third = await local(dataDir, 0);
    const client3 = new ApiClient(third.apiUrl);
    expect((await client3.get(id)).status).toBe("succeeded");
    expect(await downloadRows(client3, id)).toEqual(rows);
    third.child.kill("SIGINT");
    expect(await third.exited).toBe(0);
  }, 400_000);

  it("completes an operation that was running when the stack was SIGKILLed, every row exactly once", async () => {
    const dataDir = path.join(dir, "data-running");
    const input = path.join(dir, "running.csv");
    const ROWS = 200;
    await writeNumbersCsv(input, ROWS);

    const first = await local(dataDir, 2);
    const client1 = new ApiClient(first.apiUrl);
    const { id } = await client1.submit(input, spec(100, 10));
    // Killed mid-run: some shards committed, others running or queued.
    await waitFor(
      "a shard committed",
      async () => ((await client1.get(id)).shards.done > 0 ? true : undefined),
      120_000,
    );
    const pids = await components(first, 3);
    first.child.kill("SIGKILL");
    await first.exited;
    await noneRunning(pids);

    const second = await local(dataDir, 2);
    const client2 = new ApiClient(second.apiUrl);
    const before = await client2.get(id);
    expect(before.status).toBe("running");
    expect(before.shards.done).toBeLessThan(before.shards.total);
    const done = await waitForOperation(client2, id, { progress: false, intervalMs: 500 });
    expect(done.status).toBe("succeeded");
    expectEveryRowOnce(await downloadRows(client2, id), ROWS);
    second.child.kill("SIGINT");
    expect(await second.exited).toBe(0);
  }, 400_000);
});
