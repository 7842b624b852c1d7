/**
 * Fault tolerance end to end on the local stack: spot reclaims with and without notice, a
 * duplicated delivery and a scheduler kill, all during one operation — which must finish by
 * itself with every row exactly once and right. The faults start once rows are committing. And a poison shard: failed after its error
 * attempts, the rest of the operation succeeds.
 */
import path from "node:path";
import { SendMessageCommand } from "@aws-sdk/client-sqs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { waitForOperation } from "../../src/cli/wait.ts";
import { customerRow, writeCustomersWorkbook } from "../../src/demo/customers.ts";
import { demoSpec } from "../../src/demo/run-demo.ts";
import { startTaxRegistry, type TaxRegistry, taxRecordFor } from "../../src/demo/tax-registry.ts";
import type { LocalStack } from "../../src/local/stack.ts";
import { shardIdFor } from "../../src/shared/keys.ts";
import type { Attempt } from "../../src/shared/schemas/shard.ts";
import {
  downloadRows,
  shardAttempts,
  stackClients,
  startTestStack,
  type TestStack,
  withStackStore,
} from "../support/local-stack.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every attempt record of the operation's first `shards` shards. */
function attemptsOf(stack: LocalStack, op: string, shards: number): Promise<Attempt[]> {
  return withStackStore(stack, async (store) => {
    const out: Attempt[] = [];
    for (let s = 0; s < shards; s++) out.push(...(await shardAttempts(store, op, shardIdFor(s))));
    return out;
  });
}

describe("fault tolerance (local stack)", () => {
  let registry: TaxRegistry;
  let env: TestStack | undefined;

  beforeAll(async () => {
    registry = await startTaxRegistry();
  });
  afterEach(async () => {
    await env?.close();
    env = undefined;
  }, 60_000);
  afterAll(async () => {
    await registry?.close();
  });

  it("survives notices, SIGKILLs, a duplicate delivery and a scheduler restart: every row once, right", async () => {
    const ROWS = 5_000;
    const SHARD = 250;
    env = await startTestStack("faults", {
      workers: 4,
      visibilityTimeoutSeconds: 6,
      timeFactor: 0.05, // a two-minute notice lasts 6 s
      egressAllow: [new URL(registry.url).host],
    });
    const { dir, stack, client } = env;
    const input = path.join(dir, "customers.xlsx");
    await writeCustomersWorkbook(input, ROWS);
    const base = demoSpec(registry.url);
    const spec = {
      ...base,
      // Few requests in flight so the operation lasts long enough to be hurt.
      task: { ...base.task, options: { ...base.task.options, concurrency: 4 } },
      shardSize: SHARD,
      checkpoint: { everyRows: 25, everySeconds: 1 },
    };
    const { id } = await client.submit(input, spec);

    const clients = stackClients(stack);
    const chaos = (async () => {
      // Faults start once shards run (the split done, rows committing), not at a fixed time after
      // submission: on a loaded machine the split alone has taken 39 s, and faults that all land
      // before it hurt nothing (no attempt is interrupted) or forge a duplicate for a shard whose
      // input does not exist yet.
      for (;;) {
        const now = await client.get(id);
        if (now.status === "running" && now.rows.done > 0) break;
        if (now.status !== "queued" && now.status !== "splitting" && now.status !== "running")
          throw new Error(`the operation reached ${now.status} before the faults`);
        await sleep(200);
      }
      // The notice goes to an instance with an attempt running, so it interrupts one (an idle
      // instance, which a loaded machine can give at this point, would interrupt nothing).
      const running = await attemptsOf(stack, id, ROWS / SHARD).then(
        (all) => new Set(all.filter((a) => !a.endedAt).map((a) => a.instanceId)),
      );
      const live = stack.liveInstances();
      (live.find((i) => running.has(i.name)) ?? live[0])?.reclaim(true); // notice
      await sleep(1_500);
      stack.liveInstances()[1]?.reclaim(false); // SIGKILL, no notice
      // A duplicated delivery of a shard that is probably running or done already.
      await clients.sqs.send(
        new SendMessageCommand({
          QueueUrl: stack.resources.queues.work,
          MessageBody: JSON.stringify({
            v: 1,
            operationId: id,
            shardId: shardIdFor(1),
            start: SHARD,
            end: 2 * SHARD,
          }),
        }),
      );
      await sleep(1_000);
      await stack.killScheduler();
      await sleep(1_500);
      await stack.restartScheduler();
      stack.liveInstances()[2]?.reclaim(true);
      await sleep(2_000);
      stack.liveInstances()[0]?.reclaim(false);
    })();

    // The API is down during the scheduler restart: the waiter rides it out by itself.
    const view = await waitForOperation(client, id, {
      progress: false,
      intervalMs: 300,
      notices: { write: () => undefined },
    });
    await chaos;
    clients.destroy();
    expect(view.status).toBe("succeeded");

    const rows = await downloadRows(client, id);
    expect(rows).toHaveLength(ROWS + 1);
    for (let i = 0; i < ROWS; i++) {
      const cells = rows[i + 1]!;
      const expected = customerRow(i);
      const record = taxRecordFor(expected.customer_id);
      expect(cells[0]).toBe(expected.customer_id);
      expect(cells[4] ?? null).toBe(record?.taxDue ?? null);
      expect(cells[6] ?? null).toBeNull();
    }

    const attempts = await attemptsOf(stack, id, ROWS / SHARD);
    const causes = new Set(attempts.map((a) => a.cause));
    expect(causes.has("completed")).toBe(true);
    expect(causes.has("interrupted")).toBe(true);
    expect(causes.has("error")).toBe(false);
    expect(stack.instances.length).toBeGreaterThan(4); // reclaimed instances were replaced
  }, 240_000);

  it("fails a poison shard after its error attempts and finishes the rest", async () => {
    env = await startTestStack("poison", {
      workers: 2,
      plugins: {
        // Crashes the worker thread on one customer: the whole shard's attempt fails, every time.
        "fragile.mjs": `export default function (row) {
  if (row.customer_id === "C100123") process.exit(3);
  return { upper: String(row.name).toUpperCase() };
}
`,
      },
    });
    const { dir, stack, client } = env;
    const input = path.join(dir, "small.xlsx");
    await writeCustomersWorkbook(input, 1_000);
    const { id } = await client.submit(input, {
      task: { name: "transform", options: { module: "fragile" } },
      shardSize: 100,
      toleratedFailurePercent: 20,
      maxErrorAttempts: 3,
    });
    const view = await waitForOperation(client, id, { progress: false, intervalMs: 200 });
    expect(view.status).toBe("succeeded-with-failures");
    expect(view.shards.failed).toBe(1);
    expect(view.rows.failed).toBe(100);

    const rows = await downloadRows(client, id);
    expect(rows).toHaveLength(1_001);
    const header = rows[0]!;
    const errorCol = header.indexOf("error");
    const upperCol = header.indexOf("upper");
    for (let i = 0; i < 1_000; i++) {
      const cells = rows[i + 1]!;
      if (i >= 100 && i < 200) {
        expect(String(cells[errorCol])).not.toBe("");
        expect(cells[errorCol]).toBeTruthy();
      } else {
        expect(cells[upperCol]).toBe(customerRow(i).name.toUpperCase());
        expect(cells[errorCol] ?? null).toBeNull();
      }
    }
    const attempts = await attemptsOf(stack, id, 10);
    expect(attempts.filter((a) => a.shardId === shardIdFor(1) && a.cause === "error")).toHaveLength(
      3,
    );
  }, 180_000);
});
