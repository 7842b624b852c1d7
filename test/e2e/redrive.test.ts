/**
 * Operator control on the local stack in fleet mode (issue 14 items 4 and 5): an operation
 * submitted with its own instance cap of 1 runs on one instance; raising the cap with
 * `PATCH /operations/:id` launches more within a fleet pass; once it has finished and its fleet
 * is gone, `DELETE /operations/:id` (the client `shardfleet rm` uses) leaves no object of it in
 * the bucket.
 */
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitForOperation } from "../../src/cli/wait.ts";
import { FLEET_TAGS } from "../../src/shared/capacity.ts";
import { keys } from "../../src/shared/keys.ts";
import {
  downloadRows,
  fleetEnded,
  startTestStack,
  type TestStack,
  withStackStore,
} from "../support/local-stack.ts";
import { PACED_DOUBLE_PLUGIN, writeNumbersCsv } from "../support/plugins.ts";
import { waitFor } from "../support/wait.ts";

const ROWS = 240;
const SHARD = 20;

describe("caps changed mid-run, then delete, on the local stack", () => {
  let env: TestStack;

  beforeAll(async () => {
    env = await startTestStack("redrive", {
      plugins: { "paced.mjs": PACED_DOUBLE_PLUGIN },
      capacity: "fleet",
      maxInstances: 6,
      settings: {
        SHARDFLEET_IDLE_TIMEOUT_S: "8",
      },
    });
  }, 60_000);

  afterAll(async () => {
    await env?.close();
  }, 60_000);

  it("holds the operation's instance cap, raises it within a pass, and deletes every object", async () => {
    const { dir, stack, client } = env;
    const input = path.join(dir, "numbers.csv");
    await writeNumbersCsv(input, ROWS);
    const { id } = await client.submit(input, {
      task: { name: "transform", options: { module: "paced", options: { rowMs: 150 } } },
      shardSize: SHARD,
      csvValues: "text",
    });
    // Before the fleet manager sizes it: one instance at most.
    const capped = await client.patch(id, { maxInstances: 1 });
    expect(capped.caps).toEqual({ maxInstances: 1 });

    const tags = { [FLEET_TAGS.operation]: id };
    const launched = () => stack.localEc2!.describe(tags);
    // The first shard commits on the one instance: the fleet has planned several passes by then.
    await waitFor(
      "a shard committed",
      async () => ((await client.get(id)).shards.done > 0 ? true : undefined),
      60_000,
    );
    expect(launched()).toHaveLength(1);

    const raised = await client.patch(id, { maxInstances: 4 });
    expect(raised.caps).toEqual({ maxInstances: 4 });
    const more = await waitFor(
      "instances beyond the old cap",
      async () => {
        const n = launched().length;
        return n > 1 ? n : undefined;
      },
      10_000,
    );
    expect(more).toBeLessThanOrEqual(4);

    const done = await waitForOperation(client, id, { progress: false, intervalMs: 250 });
    expect(done.status).toBe("succeeded");
    const rows = await downloadRows(client, id);
    expect(rows.slice(1).map((r) => r[0])).toEqual(
      Array.from({ length: ROWS }, (_, n) => String(n)),
    );

    // A finished operation's caps no longer change.
    await expect(client.patch(id, { maxInstances: 2 })).rejects.toThrow(/409.*succeeded/);

    // Delete once its fleet is gone (the fleet manager's last writes are its terminations).
    await fleetEnded(stack, client, id, 30_000);
    await withStackStore(stack, async (store) => {
      const before = await Promise.all(keys.operationPrefixes(id).map((p) => store.list(p)));
      expect(before.flat().length).toBeGreaterThan(ROWS / SHARD);
      await client.remove(id);
      const after = await Promise.all(keys.operationPrefixes(id).map((p) => store.list(p)));
      expect(after.flat()).toEqual([]);
      // Nothing of it anywhere in the bucket.
      const all = [...(await store.list("operations/")), ...(await store.list("scratch/"))];
      expect(all.filter((k) => k.includes(id))).toEqual([]);
    });
    await expect(client.get(id)).rejects.toThrow(/404/);
    await expect(client.remove(id)).rejects.toThrow(/404/);
  }, 150_000);
});
