/**
 * A crash-looping shard in fleet mode, end to end on the local stack: a row that kills its
 * worker process (SIGKILL from inside the task) on every delivery. Like the image's systemd unit
 * (`Restart=always`), the local instance starts its worker again, so the crashes cost processes,
 * not instances: the fleet manager launches no replacement per crash (issue 12: 11 instances for
 * a 4-instance job before). SQS's redrive ends the loop: the shard is committed failed with the
 * dead-letter reason (no inflated count), the rest of the operation succeeds, every row once.
 */
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { waitForOperation } from "../../src/cli/wait.ts";
import { downloadRows, startTestStack, type TestStack } from "../support/local-stack.ts";
import { writeNumbersCsv } from "../support/plugins.ts";

const PLUGIN = `export const columns = ["square"];
export default function (row) {
  // The whole worker process dies, as a native crash or an out-of-memory kill would.
  if (row.n === 150) process.kill(process.pid, "SIGKILL");
  return { square: row.n * row.n };
}
`;

describe("a crash-looping shard in fleet mode (local stack)", () => {
  let env: TestStack | undefined;

  afterAll(async () => {
    await env?.close();
  }, 60_000);

  it("restarts the crashed worker on its instance instead of launching one per crash, and fails only that shard", async () => {
    const ROWS = 800;
    const MAX_INSTANCES = 4;
    env = await startTestStack("crash", {
      capacity: "fleet",
      maxInstances: MAX_INSTANCES,
      visibilityTimeoutSeconds: 5,
      plugins: { "crash.mjs": PLUGIN },
      settings: {
        // No scale-in while the loop runs: every instance seen was launched for a need.
        SHARDFLEET_IDLE_TIMEOUT_S: "600",
        // One shard per worker: a crash kills every shard in flight in that process, and under
        // load a neighbour received with the crashing shard often enough reaches the dead-letter
        // queue too (a known weakness, in the README's "not done"); this test is about instances.
        SHARDFLEET_SHARDS_IN_FLIGHT: "1",
      },
    });
    const { dir, stack, client } = env;
    const input = path.join(dir, "numbers.csv");
    await writeNumbersCsv(input, ROWS);
    const { id } = await client.submit(input, {
      task: { name: "transform", options: { module: "crash" } },
      shardSize: 100,
      toleratedFailurePercent: 20,
    });
    const view = await waitForOperation(client, id, { progress: false, intervalMs: 500 });
    expect(view.status).toBe("succeeded-with-failures");
    expect(view.shards.failed).toBe(1);
    expect(view.rows.failed).toBe(100);

    // Crashes cost worker processes, not instances: never more than the cap was launched.
    console.info(`instances launched for the crash-looping job: ${stack.instances.length}`);
    expect(stack.instances.length).toBeLessThanOrEqual(MAX_INSTANCES);
    expect((view.instances ?? []).length).toBeLessThanOrEqual(MAX_INSTANCES);

    const rows = await downloadRows(client, id);
    expect(rows).toHaveLength(ROWS + 1);
    const header = rows[0]!;
    const square = header.indexOf("square");
    const error = header.indexOf("error");
    for (let n = 0; n < ROWS; n++) {
      const cells = rows[n + 1]!;
      if (n >= 100 && n < 200) {
        // The dead-letter reason, without a delivery count that could disagree with the attempts.
        expect(String(cells[error])).toMatch(/delivered too many times/);
        expect(String(cells[error])).not.toMatch(/\d+ times/);
      } else {
        expect(cells[square]).toBe(n * n);
      }
    }
  }, 420_000);
});
