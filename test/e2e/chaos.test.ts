/**
 * Chaos end to end, the fault-injection mode of the suite: a 20,000-row operation in fleet mode
 * with every component (scheduler, workers) talking to the local S3/SQS server through a proxy
 * that answers 5 % of requests with a 500, a 503 SlowDown or throttling, delays some, and drops
 * 1 % of connections mid-response after the server has acted — and the scheduler SIGKILLed once
 * in each phase (split, run, merge; each detected from the manifest's status, never a timer).
 * It must finish by itself: every row exactly once and right, every shard committed once, and
 * no instance left running in local EC2 (the fleet manager's EC2 API, which has no local peer
 * but our own) or claimed alive by the fleet record.
 */
import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { customerRow, writeCustomersWorkbook } from "../../src/demo/customers.ts";
import { demoSpec } from "../../src/demo/run-demo.ts";
import { startTaxRegistry, type TaxRegistry, taxRecordFor } from "../../src/demo/tax-registry.ts";
import { loadManifest } from "../../src/scheduler/operations.ts";
import { keys, shardIdFor } from "../../src/shared/keys.ts";
import { ObjectStore } from "../../src/shared/object-store.ts";
import type { Manifest } from "../../src/shared/schemas/operation.ts";
import { shardDoneSchema } from "../../src/shared/schemas/shard.ts";
import { type FaultProxy, startFaultProxy } from "../support/fault-proxy.ts";
import { CLI } from "../support/local-cli.ts";
import {
  downloadRows,
  fleetEnded,
  shardAttempts,
  stackClients,
  startTestStack,
  type TestStack,
} from "../support/local-stack.ts";
import { waitFor } from "../support/wait.ts";

const root = path.resolve(import.meta.dirname, "../..");

/** Runs `shardfleet submit FILE --spec SPEC --wait` from the sources: its id, then its exit. */
function submitAndWait(
  file: string,
  spec: string,
  api: string,
): { id: Promise<string>; exited: Promise<{ code: number | null; stderr: string }> } {
  const child = spawn(
    process.execPath,
    [...CLI, "submit", file, "--spec", spec, "--wait", "--api", api],
    { cwd: root, env: { PATH: process.env.PATH }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (c: Buffer) => {
    stderr += c.toString();
  });
  const id = new Promise<string>((resolve, reject) => {
    child.stdout.on("data", (c: Buffer) => {
      stdout += c.toString();
      const first = stdout.split("\n");
      if (first.length > 1) resolve(first[0]!);
    });
    child.on("exit", (code) => reject(new Error(`submit exited ${code} before its id: ${stderr}`)));
  });
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) => {
    child.on("exit", (code) => resolve({ code, stderr }));
  });
  return { id, exited };
}

const ROWS = 20_000;
const SHARD = 200;
const SHARDS = ROWS / SHARD;
/** Deadlines for events, not figures: alone the whole test takes minutes, under load many more. */
const PHASE_DEADLINE_MS = 300_000;

describe("chaos: faults on every S3/SQS call and a scheduler SIGKILL in each phase (local stack, fleet mode)", () => {
  let registry: TaxRegistry;
  let proxy: FaultProxy | undefined;
  let env: TestStack | undefined;

  beforeAll(async () => {
    registry = await startTaxRegistry();
  });
  afterAll(async () => {
    await env?.close();
    await proxy?.close();
    await registry?.close();
  }, 120_000);

  it("finishes by itself: every row exactly once, no orphan instance", async () => {
    env = await startTestStack("chaos", {
      capacity: "fleet",
      maxInstances: 4,
      logDir: process.env.CHAOS_E2E_LOGS,
      visibilityTimeoutSeconds: 10,
      egressAllow: [new URL(registry.url).host],
      interpose: async (endpoint) => {
        proxy = await startFaultProxy(endpoint);
        return proxy.endpoint;
      },
      settings: {
        // Idle counts from launch, and on a loaded machine a worker has taken over 10 s to start:
        // a short timeout terminated every instance before it polled, over and over. Instances
        // still end with the operation (operation-ended), so a long one costs the test nothing.
        SHARDFLEET_IDLE_TIMEOUT_S: "120",
        // Under load 20 with faults, 10 s leases lapsed mid-split (a renewal sent more than
        // 6.7 s before the next could land), restarting the split each time; 15 s holds.
        SHARDFLEET_LEASE_S: "15",
      },
    });
    const { dir, stack: live, client } = env;
    const faults = proxy!;
    // Every component talks through the proxy, queue URLs included.
    expect(live.componentEnv.AWS_ENDPOINT_URL).toBe(faults.endpoint);
    for (const queue of ["WORK_QUEUE_URL", "STRAGGLER_QUEUE_URL", "DLQ_URL"]) {
      expect(live.componentEnv[`SHARDFLEET_${queue}`]).toMatch(new RegExp(`^${faults.endpoint}/`));
    }
    // Faults from the first request the operation makes on: its upload, split, run and merge.
    faults.chaos({
      errorRate: 0.05,
      dropRate: 0.01,
      latency: { rate: 0.05, minMs: 20, maxMs: 400 },
      seed: Number(process.env.CHAOS_SEED ?? 1),
    });

    const clients = stackClients(live); // direct to the server: the test's own reads see no faults
    const store = new ObjectStore(clients, { bucket: live.resources.bucket });
    const manifest = () => loadManifest(store, id);
    const doneMarkers = async () =>
      (await store.list(keys.shardsPrefix(id))).filter((k) => k.endsWith("/done.json")).length;
    /**
     * Waits for the operation's manifest to satisfy `ready`, looking every `everyMs`. The S3/SQS
     * server runs in this process: polling it hard (a listing every 25 ms) starved the stack
     * under load, so only the short phases are watched closely.
     */
    const phase = (
      what: string,
      ready: (m: Manifest) => Promise<boolean> | boolean,
      everyMs = 50,
    ) =>
      waitFor(
        what,
        async () => {
          const m = await manifest();
          if (m && ["failed", "cancelled"].includes(m.status)) {
            throw new Error(
              `the operation ended ${m.status} waiting for ${what}: ${m.error?.message}`,
            );
          }
          return m && (await ready(m)) ? m : undefined;
        },
        PHASE_DEADLINE_MS,
        everyMs,
      );
    const kills: { phase: string; status: string; doneShards: number }[] = [];
    const killInPhase = async (name: string, status: Manifest["status"]) => {
      await live.killScheduler();
      const after = (await manifest())!;
      kills.push({ phase: name, status: after.status, doneShards: await doneMarkers() });
      // The kill landed in the phase it aimed at: the manifest still says so.
      expect(after.status).toBe(status);
      await live.restartScheduler();
    };

    const input = path.join(dir, "customers.xlsx");
    await writeCustomersWorkbook(input, ROWS);
    const base = demoSpec(registry.url);
    const specFile = path.join(dir, "spec.json");
    await writeFile(
      specFile,
      JSON.stringify({
        ...base,
        task: { ...base.task, options: { ...base.task.options, concurrency: 10 } },
        shardSize: SHARD,
        checkpoint: { everyRows: 50, everySeconds: 1 },
      }),
    );
    const started = Date.now();
    // `shardfleet submit --wait`, the process a user runs: it must ride out all three restarts.
    const cli = submitAndWait(input, specFile, live.apiUrl!);
    const id = await cli.id;

    // Kill 1: during the split.
    await phase("the split to start", (m) => m.status === "splitting");
    await killInPhase("split", "splitting");
    // Kill 2: mid-run, a quarter of the shards committed.
    await phase(
      "a quarter of the shards committed",
      async (m) => m.status === "running" && (await doneMarkers()) >= SHARDS / 4,
      500,
    );
    await killInPhase("run", "running");
    // Kill 3: during the merge.
    await phase("the merge to start", (m) => m.status === "merging");
    await killInPhase("merge", "merging");

    const waited = await cli.exited;
    const elapsedMs = Date.now() - started;
    expect(waited.code).toBe(0); // the operation's own exit code: succeeded
    expect(waited.stderr).toMatch(/reconnecting…/);
    const view = await client.get(id);
    expect(view.status).toBe("succeeded");
    expect(view.rows).toEqual({ total: ROWS, done: ROWS, failed: 0 });

    // Every row exactly once, in order, right.
    const rows = await downloadRows(client, id);
    expect(rows).toHaveLength(ROWS + 1);
    for (let i = 0; i < ROWS; i++) {
      const cells = rows[i + 1]!;
      const expected = customerRow(i);
      expect(cells[0]).toBe(expected.customer_id);
      expect(cells[4] ?? null).toBe(taxRecordFor(expected.customer_id)?.taxDue ?? null);
      expect(cells[6] ?? null).toBeNull();
    }
    expect(await doneMarkers()).toBe(SHARDS);
    // The attempt each commit names ended `completed`: a commit whose answer was lost (dropped
    // after S3 wrote it, the SDK's retry answered 412) was once recorded as `lost` to "another
    // worker", though the done marker was its own.
    const commits: { shardId: string; cause: string | undefined }[] = [];
    for (let s = 0; s < SHARDS; s++) {
      const shardId = shardIdFor(s);
      const done = await store.getJson(keys.done(id, shardId), shardDoneSchema);
      const attempts = await shardAttempts(store, id, shardId);
      commits.push({
        shardId,
        cause: attempts.find((a) => a.attemptId === done?.attemptId)?.cause,
      });
    }
    expect(commits.filter((c) => c.cause !== "completed")).toEqual([]);

    // No orphan: every instance local EC2 launched for it is terminated, and the fleet record
    // (the view) says so; the cost report is then final.
    const ended = await fleetEnded(live, client, id, PHASE_DEADLINE_MS);
    expect(ended.instances!.length).toBeGreaterThan(0);
    const cost = await waitFor(
      "a final cost report",
      async () => {
        const report = await client.cost(id);
        return report.provisional ? undefined : report;
      },
      PHASE_DEADLINE_MS,
      500,
    );
    expect(cost.provisional).toBe(false);

    clients.destroy();
    // It went through faults of every kind, not around them.
    for (const kind of ["server-error", "slow-down", "throttled", "dropped", "delayed"] as const) {
      expect(faults.injected[kind]).toBeGreaterThan(0);
    }
    // Figures for the report.
    console.info(
      JSON.stringify({
        elapsedMs,
        kills,
        injected: faults.injected,
        requests: faults.seen.length,
        instances: ended.instances!.length,
      }),
    );
  }, 1_800_000);
});
