/**
 * Fair share end to end on the local stack in fleet mode: a big operation runs; a small one
 * (1,000 rows) is submitted second. The scheduler's dispatcher keeps the work queue's backlog
 * small and gives the small one the next slots, so it finishes while many of the big one's
 * shards have not started — asserted on the order of events (what the big one had started when
 * the small one ended, how far its shards had been dispatched), not on durations. Every row of both is in
 * its output exactly once.
 */
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { OperationView } from "../../src/cli/api-client.ts";
import { waitForOperation } from "../../src/cli/wait.ts";
import { keys } from "../../src/shared/keys.ts";
import { dispatchRecordSchema } from "../../src/shared/schemas/dispatch.ts";
import {
  downloadRows,
  startTestStack,
  type TestStack,
  withStackStore,
} from "../support/local-stack.ts";
import { PACED_DOUBLE_PLUGIN, writeNumbersCsv } from "../support/plugins.ts";
import { waitFor } from "../support/wait.ts";

const BIG = { rows: 2_400, shardSize: 20, rowMs: 50 };
const SMALL = { rows: 1_000, shardSize: 100, rowMs: 2 };
const BIG_SHARDS = BIG.rows / BIG.shardSize;

describe("fair share between operations (local stack, fleet mode)", () => {
  let env: TestStack;

  beforeAll(async () => {
    env = await startTestStack("fair", {
      plugins: { "slow.mjs": PACED_DOUBLE_PLUGIN },
      capacity: "fleet",
      maxInstances: 2,
    });
  }, 60_000);

  afterAll(async () => {
    await env?.close();
  }, 60_000);

  async function submit(
    name: string,
    { rows, shardSize, rowMs }: typeof BIG,
    priority?: number,
  ): Promise<string> {
    const input = path.join(env.dir, `${name}.csv`);
    await writeNumbersCsv(input, rows);
    const { id } = await env.client.submit(input, {
      name,
      task: { name: "transform", options: { module: "slow", options: { rowMs } } },
      shardSize,
      csvValues: "text",
      ...(priority === undefined ? {} : { priority }),
    });
    return id;
  }

  async function dispatched(id: string): Promise<number | undefined> {
    return withStackStore(
      env.stack,
      async (store) => (await store.getJson(keys.dispatch(id), dispatchRecordSchema))?.dispatched,
    );
  }

  /** Every input row once, in order, with its result and no error. */
  async function everyRowOnce(id: string, rows: number): Promise<void> {
    const out = await downloadRows(env.client, id);
    expect(out[0]).toEqual(["n", "double", "error"]);
    expect(out.slice(1).map((r) => [r[0], r[1], r[2] ?? null])).toEqual(
      Array.from({ length: rows }, (_, n) => [String(n), n * 2, null]),
    );
  }

  it("a small operation submitted second finishes while many of the big one's shards have not started; every row of both once", async () => {
    const { client } = env;
    const big = await submit("big", BIG);
    await waitFor(
      "the big operation to commit rows",
      async () => {
        const v = await client.get(big);
        return v.status === "running" && v.rows.done > 0 ? v : undefined;
      },
      180_000,
      200,
    );
    // The backlog is bounded: the big one's shards are not all on the queue.
    const bigDispatchedBefore = await dispatched(big);
    expect(bigDispatchedBefore).toBeLessThan(BIG_SHARDS);

    const small = await submit("small", SMALL, 10);
    expect((await client.get(small)).priority).toBe(10);
    const smallView = await waitForOperation(client, small, { progress: false, intervalMs: 100 });
    // The moment the small one ended: how far the big one was.
    const [bigAtEnd, bigDispatchedAtEnd]: [OperationView, number | undefined] = await Promise.all([
      client.get(big),
      dispatched(big),
    ]);
    expect(smallView.status).toBe("succeeded");
    expect(smallView.rows).toEqual({ total: SMALL.rows, done: SMALL.rows, failed: 0 });
    expect(bigAtEnd.status).toBe("running");
    // Served in a fair order, not after the big one: behind one FIFO queue the small one's
    // shards would start only once every big shard had; here a quarter or more of them had not
    // even started (nor all been put on the queue).
    expect(bigAtEnd.shards.pending).toBeGreaterThanOrEqual(BIG_SHARDS / 4);
    expect(bigDispatchedAtEnd).toBeLessThan(BIG_SHARDS);
    expect(await dispatched(small)).toBe(SMALL.rows / SMALL.shardSize);

    const bigView = await waitForOperation(client, big, { progress: false, intervalMs: 250 });
    expect(bigView.status).toBe("succeeded");
    expect(bigView.rows).toEqual({ total: BIG.rows, done: BIG.rows, failed: 0 });
    expect(await dispatched(big)).toBe(BIG_SHARDS);
    await everyRowOnce(small, SMALL.rows);
    await everyRowOnce(big, BIG.rows);
  }, 420_000);
});
