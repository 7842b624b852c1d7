/**
 * Wasted work after a hard kill, end to end on the local stack: a worker is SIGKILLed in the
 * middle of a shard, the next one resumes from its checkpoint, and the cost report counts the
 * rows the dead attempt ran beyond what it left checkpointed — a lower bound of what the source
 * really saw twice (its request count), said as such — instead of about zero.
 */
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitForOperation } from "../../src/cli/wait.ts";
import { writeCustomersWorkbook } from "../../src/demo/customers.ts";
import { demoSpec } from "../../src/demo/run-demo.ts";
import { startTaxRegistry, type TaxRegistry } from "../../src/demo/tax-registry.ts";
import { shardIdFor } from "../../src/shared/keys.ts";
import type { Attempt } from "../../src/shared/schemas/shard.ts";
import {
  shardAttempts,
  startTestStack,
  type TestStack,
  withStackStore,
} from "../support/local-stack.ts";
import { waitFor } from "../support/wait.ts";

describe("wasted work after a SIGKILL (local stack)", () => {
  let registry: TaxRegistry;
  let env: TestStack | undefined;

  beforeAll(async () => {
    // No 503s: every request is one row run once, so requests − rows is what was redone.
    registry = await startTaxRegistry({ failureRate: 0 });
  });
  afterAll(async () => {
    await env?.close();
    await registry?.close();
  }, 60_000);

  it("counts the killed attempt's rows beyond its checkpoint, as a lower bound of the real redo", async () => {
    const ROWS = 4_000;
    const SHARD = 2_000;
    env = await startTestStack("waste", {
      workers: 2,
      visibilityTimeoutSeconds: 6,
      settings: { SHARDFLEET_SHARDS_IN_FLIGHT: "1" },
      egressAllow: [new URL(registry.url).host],
    });
    const { dir, stack, client } = env;
    const input = path.join(dir, "customers.xlsx");
    await writeCustomersWorkbook(input, ROWS);
    const base = demoSpec(registry.url);
    const { id } = await client.submit(input, {
      ...base,
      // Rows finish out of order (40 in flight, 20–80 ms each): a checkpoint covers the
      // unbroken prefix, the attempt record counts every finished row.
      task: {
        ...base.task,
        options: { ...base.task.options, concurrency: 40, adaptiveConcurrency: false },
      },
      shardSize: SHARD,
      checkpoint: { everyRows: 100, everySeconds: 1 },
    });

    // The first shard's attempt, once it has recorded a few hundred rows: kill its instance.
    const victim = await waitFor(
      "an attempt of shard 0 with rows recorded",
      () =>
        withStackStore(stack, async (store) =>
          (await shardAttempts(store, id, shardIdFor(0))).find(
            (a) => a.cause === "running" && a.rowsDone >= 300 && a.rowsDone < SHARD - 500,
          ),
        ),
      120_000,
      20,
    );
    const instance = stack.liveInstances().find((i) => i.name === victim.instanceId);
    expect(instance).toBeDefined();
    instance!.reclaim(false); // SIGKILL, no notice

    const view = await waitForOperation(client, id, { progress: false, intervalMs: 300 });
    expect(view.status).toBe("succeeded");
    const attempts: Attempt[] = await withStackStore(stack, (store) =>
      shardAttempts(store, id, shardIdFor(0)),
    );
    const resumed = attempts.find((a) => a.cause === "completed");
    // The next attempt resumed from the dead one's checkpoint, which it recorded.
    expect(resumed?.startCursor).toBeGreaterThan(0);

    const report = await client.cost(id);
    const reallyRedone = registry.stats.requests - ROWS;
    console.info(
      `wasted work after a SIGKILL: reported ${report.wasted.rowsRedone} rows redone (${report.wasted.uncountedAttempts} attempts without a record), the source saw ${reallyRedone} rows twice`,
    );
    expect(report.wasted.uncountedAttempts).toBeGreaterThanOrEqual(1);
    expect(report.wasted.rowsRedone).toBeGreaterThan(0);
    expect(report.wasted.rowsRedone).toBeLessThanOrEqual(reallyRedone);
  }, 300_000);
});
