/**
 * One active scheduler per bucket, end to end on the local stack: three scheduler processes on
 * one bucket; the active one SIGKILLed during the split, then the standby that took over
 * SIGKILLed mid-run, the third standing by. The operation completes by itself with every row
 * exactly once, and the records show that no two schedulers ever acted at once: the lease
 * record's tenures do not overlap, and every action a scheduler's loops logged, and every
 * manifest time the test can attribute, falls within its writer's tenure.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient } from "../../src/cli/api-client.ts";
import { waitForOperation } from "../../src/cli/wait.ts";
import { customerRow, writeCustomersWorkbook } from "../../src/demo/customers.ts";
import { demoSpec } from "../../src/demo/run-demo.ts";
import { startTaxRegistry, type TaxRegistry, taxRecordFor } from "../../src/demo/tax-registry.ts";
import type { ComponentProcess } from "../../src/local/processes.ts";
import { SchedulerLeaseRecord, tenuresOf } from "../../src/scheduler/lease/scheduler-lease.ts";
import { loadManifest } from "../../src/scheduler/operations.ts";
import { keys } from "../../src/shared/keys.ts";
import { ObjectStore } from "../../src/shared/object-store.ts";
import type { LeaseTenure, SchedulerLease } from "../../src/shared/schemas/lease.ts";
import {
  downloadRows,
  stackClients,
  startTestStack,
  type TestStack,
} from "../support/local-stack.ts";

const ROWS = 20_000;
const SHARD = 50;
const SHARDS = ROWS / SHARD;
/** The local stack's own lease: short enough to keep the test short, long enough for a busy machine. */
const LEASE_S = 10;

/** Polls `read` until `done` holds for its value (an event in S3 the test cannot subscribe to). */
async function waitUntil<T>(
  what: string,
  read: () => Promise<T>,
  done: (value: T) => boolean,
  timeoutMs = 120_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The holder id's pid part (`host/pid/random`). */
const pidOf = (holder: string) => Number(holder.split("/").at(-2));

interface LoopLine {
  time: string;
  tenure: string;
  msg: string;
}

/**
 * What the scheduler's loops log right after (or right before) a write: the manifest's status
 * changes, a split's slices and messages, a dead-letter commit. Lines about stopping are not
 * actions (a loop that lost its lease may say it stopped after the tenure ended).
 */
const ACTIONS = [
  /^splitting$/,
  /^resuming an interrupted split/,
  /^split done/,
  /^every shard committed; merging$/,
  /^operation (succeeded|succeeded-with-failures|failed)$/,
  /failed; operation failed$/,
  /^shard dead-lettered/,
];

/** Every action a scheduler's loops logged during a tenure (lines carry `tenure`: the holder id). */
async function actionLines(file: string): Promise<LoopLine[]> {
  const out: LoopLine[] = [];
  for (const raw of (await readFile(file, "utf-8")).split("\n")) {
    if (!raw.startsWith("{")) continue;
    const line = JSON.parse(raw) as Partial<LoopLine>;
    if (line.tenure && line.time && line.msg && ACTIONS.some((a) => a.test(line.msg!))) {
      out.push(line as LoopLine);
    }
  }
  return out;
}

function within(time: string, tenure: LeaseTenure): boolean {
  const t = Date.parse(time);
  return t >= Date.parse(tenure.acquiredAt) && t <= Date.parse(tenure.expiresAt);
}

describe("one active scheduler per bucket (local stack)", () => {
  let registry: TaxRegistry;
  let env: TestStack | undefined;

  beforeAll(async () => {
    registry = await startTaxRegistry();
  });
  afterAll(async () => {
    await env?.close();
    await registry?.close();
  }, 60_000);

  it("survives the active scheduler killed during the split and its successor killed mid-run: every row once, never two acting", async () => {
    env = await startTestStack("lease", {
      workers: 3,
      logDir: process.env.LEASE_E2E_LOGS,
      visibilityTimeoutSeconds: 10,
      settings: { SHARDFLEET_LEASE_S: String(LEASE_S) },
      egressAllow: [new URL(registry.url).host],
    });
    const { dir, stack } = env;
    const clients = stackClients(stack);
    const store = new ObjectStore(clients, { bucket: stack.resources.bucket });
    const leaseRecord = new SchedulerLeaseRecord({ store });
    const lease = async (): Promise<SchedulerLease | undefined> =>
      (await leaseRecord.read())?.lease;
    const pid = (p: ComponentProcess | undefined) => p?.child.pid;

    try {
      // The first scheduler holds the lease; two more, started after, stand by.
      const first = { process: stack.scheduler!, url: stack.apiUrl! };
      const standbys = [await stack.addScheduler(), await stack.addScheduler()];
      expect(pidOf((await lease())!.holder)).toBe(pid(first.process));

      const input = path.join(dir, "customers.xlsx");
      await writeCustomersWorkbook(input, ROWS);
      const client = new ApiClient(first.url);
      const base = demoSpec(registry.url);
      const { id } = await client.submit(input, {
        ...base,
        task: { ...base.task, options: { ...base.task.options, concurrency: 10 } },
        shardSize: SHARD,
        checkpoint: { everyRows: 25, everySeconds: 1 },
      });

      // Kill 1: the active scheduler, in the middle of its split.
      await waitUntil(
        "the split to start",
        () => loadManifest(store, id),
        (m) => m?.status === "splitting",
      );
      await stack.killScheduler();
      const afterKill = (await loadManifest(store, id))!;
      expect(afterKill.status).toBe("splitting");
      expect(afterKill.shards).toBeUndefined();

      // One standby takes over once the lease lapses, and redoes the split; the other stays
      // a standby behind it.
      const taken = await waitUntil("a standby to take over", lease, (l) =>
        standbys.some((s) => pidOf(l!.holder) === pid(s.process)),
      );
      const second = standbys.find((s) => pidOf(taken!.holder) === pid(s.process))!;
      const third = standbys.find((s) => s !== second)!;

      // Kill 2: the scheduler that took over, mid-run (a quarter of the shards committed).
      await waitUntil(
        "a quarter of the shards to be committed",
        async () => {
          const m = await loadManifest(store, id);
          const done = (await store.list(keys.shardsPrefix(id))).filter((k) =>
            k.endsWith("/done.json"),
          );
          return { status: m?.status, done: done.length };
        },
        (p) => p.status === "running" && p.done >= SHARDS / 4,
      );
      const midRun = (await store.list(keys.shardsPrefix(id))).filter((k) =>
        k.endsWith("/done.json"),
      );
      expect(midRun.length).toBeLessThan(SHARDS);
      await second.process.kill();

      // The last standby takes over and finishes by itself.
      const lastClient = new ApiClient(third.url);
      const view = await waitForOperation(lastClient, id, {
        progress: false,
        intervalMs: 500,
        notices: { write: () => undefined },
      });
      expect(view.status).toBe("succeeded");

      // Every row exactly once, in order, right.
      const rows = await downloadRows(lastClient, id);
      expect(rows).toHaveLength(ROWS + 1);
      for (let i = 0; i < ROWS; i++) {
        const cells = rows[i + 1]!;
        const expected = customerRow(i);
        expect(cells[0]).toBe(expected.customer_id);
        expect(cells[4] ?? null).toBe(taxRecordFor(expected.customer_id)?.taxDue ?? null);
        expect(cells[6] ?? null).toBeNull();
      }

      // Logs first, then the record: the active holder's expiry is then past every line read.
      const lines = (
        await Promise.all([first, second, third].map((s) => actionLines(s.process.logFile!)))
      ).flat();
      const final = (await lease())!;
      const tenures = tenuresOf(final);
      const holders = tenures.map((t) => t.holder);
      const [h1, h2, h3] = [first, second, third]
        .map((s) => pid(s.process))
        .map((p) => holders.find((h) => pidOf(h) === p));
      expect(h1 && h2 && h3).toBeTruthy();
      // In that order (a process that lost the lease to a slow machine may appear twice).
      expect(holders.indexOf(h1!)).toBeLessThan(holders.indexOf(h2!));
      expect(holders.lastIndexOf(h2!)).toBeLessThan(holders.lastIndexOf(h3!));
      expect(final.holder).toBe(h3);

      // The tenures never overlap: each began after the previous one had expired.
      for (let i = 1; i < tenures.length; i++) {
        expect(Date.parse(tenures[i]!.acquiredAt)).toBeGreaterThanOrEqual(
          Date.parse(tenures[i - 1]!.expiresAt),
        );
      }
      // Every action falls within one of its own holder's tenures.
      const outside = lines.filter(
        (l) => !tenures.some((t) => t.holder === l.tenure && within(l.time, t)),
      );
      expect(outside).toEqual([]);
      // Each of the three acted: the first split, the second redid the split, the third merged.
      const tenureOf = (h: string) => tenures.filter((t) => t.holder === h);
      const said = (holder: string, msg: RegExp) =>
        lines.some((l) => l.tenure === holder && msg.test(l.msg));
      // The first: its "splitting" line may still be in its buffer when SIGKILL lands, so the
      // manifest it left at the kill (still splitting) is the evidence: written in its tenure.
      expect(tenureOf(h1!).some((t) => within(afterKill.updatedAt, t))).toBe(true);
      expect(said(h2!, /^resuming an interrupted split/)).toBe(true);
      expect(said(h2!, /^split done$/)).toBe(true);
      expect(said(h3!, /^operation succeeded$/)).toBe(true);
      // The manifest's own times: the split's end by the second, the end by the third.
      const manifest = (await loadManifest(store, id))!;
      expect(tenureOf(h2!).some((t) => within(manifest.startedAt!, t))).toBe(true);
      expect(tenureOf(h3!).some((t) => within(manifest.finishedAt!, t))).toBe(true);
      // Each shard committed exactly once.
      const done = (await store.list(keys.shardsPrefix(id))).filter((k) =>
        k.endsWith("/done.json"),
      );
      expect(done).toHaveLength(SHARDS);

      // Figures for the report: how long after each kill the next scheduler acted.
      const takeovers = tenures.slice(1).map((t, i) => ({
        holder: t.holder,
        afterPreviousExpiryMs: Date.parse(t.acquiredAt) - Date.parse(tenures[i]!.expiresAt),
      }));
      const at = (holder: string, msg: RegExp) =>
        Date.parse(lines.find((l) => l.tenure === holder && msg.test(l.msg))?.time ?? "");
      const splitMs = at(h2!, /^split done$/) - at(h2!, /^resuming an interrupted split/);
      console.info(JSON.stringify({ leaseS: LEASE_S, takeovers, splitMs }));
    } finally {
      clients.destroy();
    }
  }, 480_000);
});
