/**
 * Operator control end to end on the local stack in fleet mode: cancel during the run, pause
 * with a worker SIGKILLed while paused, then resume. A transform plugin appends each row it runs
 * to a file, so the test sees which rows ran and when they stopped.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { OperationView } from "../../src/cli/api-client.ts";
import { waitForOperation } from "../../src/cli/wait.ts";
import { type FaultProxy, startFaultProxy } from "../support/fault-proxy.ts";
import {
  downloadRows,
  fleetEnded,
  startTestStack,
  type TestStack,
} from "../support/local-stack.ts";
import { writeNumbersCsv } from "../support/plugins.ts";
import { waitFor } from "../support/wait.ts";

const ROWS = 400;
const SHARD = 20;

const PLUGIN = `
import { appendFileSync } from "node:fs";
export const columns = ["double"];
export default async function counted(row, options) {
  await new Promise((r) => setTimeout(r, options.rowMs));
  appendFileSync(options.log, row.n + "\\n");
  return { double: Number(row.n) * 2 };
}
`;

/** The rows the plugin ran (with repeats), from its log. */
async function rowsRun(log: string): Promise<number[]> {
  const text = await readFile(log, "utf-8").catch(() => "");
  return text
    .split("\n")
    .filter((l) => l !== "")
    .map(Number);
}

describe("cancel, pause and resume (local stack, fleet mode)", () => {
  let env: TestStack;
  /** Between the components and the local server: lets a test hold the merge's upload open. */
  let proxy: FaultProxy | undefined;

  beforeAll(async () => {
    env = await startTestStack("control", {
      plugins: { "counted.mjs": PLUGIN },
      capacity: "fleet",
      maxInstances: 3,
      visibilityTimeoutSeconds: 6,
      interpose: async (endpoint) => {
        proxy = await startFaultProxy(endpoint);
        return proxy.endpoint;
      },
      settings: { SHARDFLEET_IDLE_TIMEOUT_S: "8" },
    });
  }, 60_000);

  afterAll(async () => {
    await env?.close();
    await proxy?.close();
  }, 60_000);

  async function submit(
    name: string,
    { rows = ROWS, shardSize = SHARD, rowMs = 40 } = {},
  ): Promise<{ id: string; log: string }> {
    const input = path.join(env.dir, `${name}.csv`);
    await writeNumbersCsv(input, rows);
    const log = path.join(env.dir, `${name}.log`);
    const { id } = await env.client.submit(input, {
      task: { name: "transform", options: { module: "counted", options: { rowMs, log } } },
      shardSize,
      csvValues: "text",
      checkpoint: { everyRows: 5, everySeconds: 1 },
    });
    return { id, log };
  }

  /** Waits until rows are committing (the run is under way). */
  function running(id: string): Promise<OperationView> {
    return waitFor(
      "rows to be done",
      async () => {
        const v = await env.client.get(id);
        return v.status === "running" && v.rows.done > 0 ? v : undefined;
      },
      120_000,
      200,
    );
  }

  it("cancels during the run: rows stop, instances end, the partial output has every row once", async () => {
    const { stack, client } = env;
    const { id, log } = await submit("cancel");
    await running(id);

    const cancelled = await client.control(id, "cancel");
    expect(cancelled.status).toBe("cancelling");
    // Idempotent: asking again answers with the view.
    expect(["cancelling", "cancelled"]).toContain((await client.control(id, "cancel")).status);

    const view = await waitForOperation(client, id, { progress: false, intervalMs: 250 });
    expect(view.status).toBe("cancelled");
    await fleetEnded(stack, client, id, 90_000);
    const ran = new Set(await rowsRun(log));
    // Stopped at a row boundary: not every row ran.
    expect(ran.size).toBeLessThan(ROWS);

    const rows = await downloadRows(client, id);
    expect(rows[0]).toEqual(["n", "double", "error"]);
    expect(rows.slice(1).map((r) => r[0])).toEqual(
      Array.from({ length: ROWS }, (_, n) => String(n)),
    );
    let done = 0;
    for (const [n, cells] of rows.slice(1).entries()) {
      if (cells[2] === "cancelled") {
        expect(cells[1] ?? null).toBeNull();
      } else {
        expect(cells[1]).toBe(n * 2);
        expect(cells[2] ?? null).toBeNull();
        expect(ran.has(n)).toBe(true);
        done++;
      }
    }
    expect(done).toBeGreaterThan(0);
    expect(done).toBeLessThan(ROWS);

    // The cost report exists, and the state machine refuses what a cancelled operation cannot do.
    expect((await client.cost(id)).operationId).toBe(id);
    await expect(client.control(id, "pause")).rejects.toThrow(/\(409\).*cancelled/);
  }, 240_000);

  /** Waits until the operation is in `status` (polled often: the window may be short). */
  function reaches(id: string, status: string): Promise<OperationView> {
    return waitFor(
      `status ${status}`,
      async () => {
        const v = await env.client.get(id);
        return v.status === status ? v : undefined;
      },
      120_000,
      25,
    );
  }

  /** Every input row once, in order; each with its result or `cancelled`. Returns the done count. */
  async function partialOutput(id: string, rows: number): Promise<number> {
    const out = await downloadRows(env.client, id);
    expect(out.slice(1).map((r) => r[0])).toEqual(
      Array.from({ length: rows }, (_, n) => String(n)),
    );
    // Result columns come from results: with none done there is no `double` column at all.
    const header = out[0]!;
    const [double, error] = [header.indexOf("double"), header.indexOf("error")];
    let done = 0;
    for (const [n, cells] of out.slice(1).entries()) {
      if (cells[error] === "cancelled") continue;
      expect([cells[double], cells[error] ?? null]).toEqual([n * 2, null]);
      done++;
    }
    return done;
  }

  it("cancels during the split: it ends cancelled, every input row in the output once", async () => {
    const { client } = env;
    const rows = 30_000;
    // The split's shard inputs are held at the proxy, so the split is still under way when the
    // cancel lands, however fast the machine (status reads are shared for a second).
    const isShardInput = (r: { method: string; url: string }) =>
      r.method === "PUT" && r.url.includes("/input.ndjson");
    const release = proxy!.hold(isShardInput);
    try {
      const { id } = await submit("cancel-split", { rows, shardSize: 1_000, rowMs: 0 });
      await reaches(id, "splitting");
      await waitFor(
        "the split's first shard input",
        async () => (proxy!.seen.some(isShardInput) ? true : undefined),
        120_000,
      );
      expect((await client.control(id, "cancel")).status).toBe("cancelling");
      release();
      const view = await waitForOperation(client, id, { progress: false, intervalMs: 250 });
      expect(view.status).toBe("cancelled");
      expect(view.rows.total).toBe(rows);
      const done = await partialOutput(id, rows);
      expect(done).toBeLessThan(rows);
    } finally {
      release();
    }
  }, 240_000);

  it("cancels during the merge: it ends cancelled with every row's result", async () => {
    const { client } = env;
    const rows = 30_000;
    // A stitched merge of 30,000 rows takes well under a second: its upload is held open so the
    // cancel lands during the merge, whatever the machine's load.
    const isResult = (r: { url: string }) => r.url.includes("/output/result.xlsx");
    const release = proxy!.hold(isResult);
    try {
      const { id } = await submit("cancel-merge", { rows, shardSize: 3_000, rowMs: 0 });
      await reaches(id, "merging");
      await waitFor(
        "the merge's first upload request",
        async () => (proxy!.seen.some(isResult) ? true : undefined),
        120_000,
      );
      expect((await client.control(id, "cancel")).status).toBe("cancelling");
      release();
      const view = await waitForOperation(client, id, { progress: false, intervalMs: 250 });
      expect(view.status).toBe("cancelled");
      // Every shard had committed before the merge: the partial output is complete.
      expect(await partialOutput(id, rows)).toBe(rows);
    } finally {
      release();
    }
  }, 240_000);

  it("pauses (a worker SIGKILLed meanwhile), scales in, resumes: every row exactly once", async () => {
    const { stack, client } = env;
    const { id, log } = await submit("pause");
    await running(id);

    const paused = await client.control(id, "pause");
    expect(paused.status).toBe("paused");
    await expect(client.control(id, "pause")).resolves.toMatchObject({ status: "paused" });
    // A worker killed outright while paused: its shard's message comes back by itself.
    stack.liveInstances()[0]?.reclaim(false);
    // Its instances scale in while paused.
    await fleetEnded(stack, client, id, 90_000);
    const whilePaused = (await rowsRun(log)).length;
    expect(whilePaused).toBeLessThan(ROWS);
    expect((await client.get(id)).status).toBe("paused");

    const resumed = await client.control(id, "resume");
    expect(resumed.status).toBe("running");
    const view = await waitForOperation(client, id, { progress: false, intervalMs: 250 });
    expect(view.status).toBe("succeeded");
    expect(view.rows).toEqual({ total: ROWS, done: ROWS, failed: 0 });
    const rows = await downloadRows(client, id);
    expect(rows.slice(1).map((r) => [r[0], r[1], r[2] ?? null])).toEqual(
      Array.from({ length: ROWS }, (_, n) => [String(n), n * 2, null]),
    );
    // Resumed from checkpoints: rows run after the pause are not all rows again.
    const total = (await rowsRun(log)).length;
    expect(total - whilePaused).toBeLessThan(ROWS);
  }, 300_000);
});
