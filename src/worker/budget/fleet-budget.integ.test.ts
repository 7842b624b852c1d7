/**
 * The done-when of the request budget (issue 18): four whole workers (consumer + processor +
 * http-enrich, in process) on the real local SQS/S3 share an operation's budget of N requests
 * a second against a source that answers 429 above N a second. Two workers start first and two
 * join later, so the budget is re-divided while the source is busy. And without a budget, two
 * workers' adaptive concurrency finds such a source's limit by itself; and a whole worker's POST
 * retries carry the row's idempotency key.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freshQueues, type LocalAws, startLocalAws } from "../../../test/support/local-aws.ts";
import { writeManifest } from "../../../test/support/manifests.ts";
import { waitFor } from "../../../test/support/wait.ts";
import { textRows, writeSlice } from "../../../test/support/worker.ts";
import { parseEgressAllow } from "../../shared/egress.ts";
import { keys, shardIdFor } from "../../shared/keys.ts";
import { silentLogger } from "../../shared/logger.ts";
import { type BudgetPeer, budgetPeerSchema } from "../../shared/schemas/budget.ts";
import { shardDoneSchema } from "../../shared/schemas/shard.ts";
import { Worker } from "../worker.ts";

/** The source's limit and the operation's budget. */
const N = 40;
const SHARDS = 8;
const ROWS_PER_SHARD = 60;

let aws: LocalAws;
let source: Server;
let base: string;
/** Arrival time of every request the source saw, and how many it refused. */
const arrivals: number[] = [];
const accepted: number[] = [];
let refused = 0;

beforeAll(async () => {
  aws = await startLocalAws("budget-fleet");
  source = createServer((req, res) => {
    const now = Date.now();
    arrivals.push(now);
    while (accepted.length > 0 && accepted[0]! <= now - 1000) accepted.shift();
    if (accepted.length >= N) {
      refused++;
      res.writeHead(429, { "retry-after": "1" });
      res.end();
      return;
    }
    accepted.push(now);
    setTimeout(() => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ v: req.url }));
    }, 5);
  });
  await new Promise<void>((resolve) => source.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(source.address() as AddressInfo).port}`;
});

afterAll(async () => {
  source?.closeAllConnections();
  await new Promise((resolve) => source?.close(resolve));
  await aws?.close();
});

/** Most requests in any window of `ms` starting at an arrival. */
function busiestWindow(times: number[], ms: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let most = 0;
  let end = 0;
  for (let start = 0; start < sorted.length; start++) {
    while (end < sorted.length && sorted[end]! < sorted[start]! + ms) end++;
    most = Math.max(most, end - start);
  }
  return most;
}

describe("request budget across a fleet (real local SQS/S3, four workers)", () => {
  it("4 workers with budget N: 0 row errors, and the source never sees over 1.1 N a second in any 5 s window", async () => {
    const queues = await freshQueues(aws);
    const op = "op-budget";
    await writeManifest(aws.store, op, ["name"], {
      name: "http-enrich",
      options: {
        url: `${base}/r/{name}`,
        results: { v: "v" },
        rateLimit: { requestsPerSecond: N },
      },
    });
    const messages = [];
    for (let s = 0; s < SHARDS; s++) {
      const rows = textRows(ROWS_PER_SHARD).map(([cell]) => [`${cell} of ${s}`]);
      messages.push(await writeSlice(aws.store, op, shardIdFor(s), s * ROWS_PER_SHARD, rows));
    }
    await aws.queue.sendShards(queues.work, messages);

    const workers: Worker[] = [];
    const runs: Array<Promise<void>> = [];
    const start = (k: number) => {
      const worker = new Worker(
        { store: aws.store, queue: aws.queue, logger: silentLogger() },
        {
          instanceId: `local-00${k}`,
          market: "spot",
          pluginDir: ".",
          egress: parseEgressAllow("127.0.0.0/8"),
          queues,
          pollWaitSeconds: 1,
          visibilityTimeoutSeconds: 30,
        },
      );
      workers.push(worker);
      runs.push(worker.run());
    };
    start(1);
    start(2);
    // Two more join while the first two are sending: the budget is divided anew.
    await waitFor("the first requests", async () => (arrivals.length > 0 ? true : undefined));
    await new Promise((r) => setTimeout(r, 1500));
    start(3);
    start(4);
    // The four count each other, each taking a quarter of the budget (what the status sums).
    await waitFor(
      "four workers each holding a quarter of the budget",
      async () => {
        const listed = await aws.store.list(keys.budgetPeersPrefix(op));
        const records = await Promise.all(
          listed.map((key) => aws.store.getJson(key, budgetPeerSchema)),
        );
        const shares = records.map((r) => r?.origins[0]?.budgetShare);
        return records.length === 4 && shares.every((x) => x === N / 4) ? true : undefined;
      },
      30_000,
    );

    const done = [];
    for (let s = 0; s < SHARDS; s++) {
      done.push(
        await waitFor(
          `shard ${s} committed`,
          () => aws.store.getJson(keys.done(op, shardIdFor(s)), shardDoneSchema),
          90_000,
        ),
      );
    }
    await Promise.all(workers.map((w) => w.stop()));
    await Promise.all(runs);

    expect(done.map((d) => d.errorRows)).toEqual(Array(SHARDS).fill(0));
    expect(new Set(done.map((d) => d.instanceId)).size).toBe(4);
    const busiest = busiestWindow(arrivals, 5000);
    console.info(
      `budget ${N}/s: ${arrivals.length} requests, ${refused} answered 429, busiest 5 s window ${busiest} (limit ${1.1 * 5 * N})`,
    );
    expect(busiest).toBeLessThanOrEqual(1.1 * 5 * N);
    // And the budget is used, not merely respected: the fleet ran near it.
    expect(busiest).toBeGreaterThanOrEqual(0.6 * 5 * N);
  }, 120_000);

  it("without a budget, two workers' adaptive concurrency converges below a source's limit of N a second: 0 row errors", async () => {
    // A source with a real latency (100 ms), so concurrency sets the rate: N × 0.1 s = 4
    // requests in flight across the fleet is what it takes.
    const LATENCY_MS = 100;
    const times: Array<{ at: number; refused: boolean }> = [];
    const taken: number[] = [];
    const slow = createServer((req, res) => {
      const now = Date.now();
      while (taken.length > 0 && taken[0]! <= now - 1000) taken.shift();
      const refused = taken.length >= N;
      times.push({ at: now, refused });
      if (refused) {
        res.writeHead(429, { "retry-after": "1" });
        res.end();
        return;
      }
      taken.push(now);
      setTimeout(() => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ v: req.url }));
      }, LATENCY_MS);
    });
    await new Promise<void>((resolve) => slow.listen(0, "127.0.0.1", resolve));
    try {
      const queues = await freshQueues(aws);
      const op = "op-adaptive";
      await writeManifest(aws.store, op, ["name"], {
        name: "http-enrich",
        options: {
          url: `http://127.0.0.1:${(slow.address() as AddressInfo).port}/r/{name}`,
          results: { v: "v" },
        },
      });
      const messages = [];
      for (let s = 0; s < SHARDS; s++) {
        const rows = textRows(ROWS_PER_SHARD).map(([cell]) => [`${cell} of ${s}`]);
        messages.push(await writeSlice(aws.store, op, shardIdFor(s), s * ROWS_PER_SHARD, rows));
      }
      await aws.queue.sendShards(queues.work, messages);
      const workers = [1, 2].map(
        (k) =>
          new Worker(
            { store: aws.store, queue: aws.queue, logger: silentLogger() },
            {
              instanceId: `local-10${k}`,
              market: "spot",
              pluginDir: ".",
              egress: parseEgressAllow("127.0.0.0/8"),
              queues,
              pollWaitSeconds: 1,
              visibilityTimeoutSeconds: 30,
            },
          ),
      );
      const runs = workers.map((w) => w.run());
      // Without a budget the workers still report the source (for the status): the concurrency
      // they settled at, read while the last shards run.
      let reported: BudgetPeer[] = [];
      const done = [];
      for (let s = 0; s < SHARDS; s++) {
        done.push(
          await waitFor(
            `shard ${s} committed`,
            async () => {
              const listed = await aws.store.list(keys.budgetPeersPrefix(op));
              const records = await Promise.all(
                listed
                  .filter((k) => k.endsWith(".json"))
                  .map((key) => aws.store.getJson(key, budgetPeerSchema)),
              );
              const fresh = records.filter((r): r is BudgetPeer => r !== undefined);
              if (fresh.length > 0) reported = fresh;
              return aws.store.getJson(keys.done(op, shardIdFor(s)), shardDoneSchema);
            },
            120_000,
          ),
        );
      }
      await Promise.all(workers.map((w) => w.stop()));
      await Promise.all(runs);

      expect(done.map((d) => d.errorRows)).toEqual(Array(SHARDS).fill(0));
      const origins = reported.flatMap((r) => r.origins);
      expect(origins.length).toBeGreaterThan(0);
      expect(origins.every((o) => o.budget === undefined && o.latencyMs !== undefined)).toBe(true);
      const concurrency = origins.reduce((sum, o) => sum + o.concurrency, 0);
      // Converged: after slow start's first overshoot, the source is rarely pushed over.
      const later = times.slice(Math.floor(times.length / 2));
      const refusedLater = later.filter((t) => t.refused).length / later.length;
      const refused = times.filter((t) => t.refused).length;
      console.info(
        `no budget, source limit ${N}/s at ${LATENCY_MS} ms: ${times.length} requests, ${refused} answered 429 (${(100 * refusedLater).toFixed(1)}% in the second half), fleet concurrency at the end ${concurrency} at ${origins.map((o) => o.latencyMs).join("/")} ms`,
      );
      expect(refusedLater).toBeLessThan(0.3);
      // Below the limit: what the source takes in flight (N × the latency the workers see, which
      // a loaded machine stretches past LATENCY_MS) plus one step per worker the sawtooth may
      // take before the next 429 cuts it back.
      const latencyMs = Math.max(LATENCY_MS, ...origins.map((o) => o.latencyMs ?? 0));
      expect(concurrency).toBeLessThanOrEqual(Math.ceil((N * latencyMs) / 1000) + 2);
    } finally {
      slow.closeAllConnections();
      await new Promise((resolve) => slow.close(resolve));
    }
  }, 180_000);

  it("a worker's POST and its retry carry the same Idempotency-Key, the operation id and the row index", async () => {
    // Every row's first attempt is answered 503; the retry succeeds.
    const seen = new Map<string, string[]>();
    const flaky = createServer((req, res) => {
      const key = String(req.headers["idempotency-key"] ?? "");
      const row = req.url ?? "";
      seen.set(row, [...(seen.get(row) ?? []), key]);
      req.resume();
      req.on("end", () => {
        const first = seen.get(row)!.length === 1;
        res.writeHead(first ? 503 : 200, { "content-type": "application/json" });
        res.end(first ? "{}" : JSON.stringify({ v: "ok" }));
      });
    });
    await new Promise<void>((resolve) => flaky.listen(0, "127.0.0.1", resolve));
    try {
      const queues = await freshQueues(aws);
      const op = "op-idempotent";
      await writeManifest(aws.store, op, ["name"], {
        name: "http-enrich",
        options: {
          url: `http://127.0.0.1:${(flaky.address() as AddressInfo).port}/r/{name}`,
          method: "POST",
          body: "{}",
          results: { v: "v" },
          backoffMs: 10,
        },
      });
      const rows = textRows(5).map(([cell]) => [`${cell}`.replace(" ", "-")]);
      await aws.queue.sendShards(queues.work, [
        await writeSlice(aws.store, op, shardIdFor(0), 100, rows),
      ]);
      const worker = new Worker(
        { store: aws.store, queue: aws.queue, logger: silentLogger() },
        {
          instanceId: "local-201",
          market: "spot",
          pluginDir: ".",
          egress: parseEgressAllow("127.0.0.0/8"),
          queues,
          pollWaitSeconds: 1,
          visibilityTimeoutSeconds: 30,
        },
      );
      const run = worker.run();
      const done = await waitFor(
        "the shard committed",
        () => aws.store.getJson(keys.done(op, shardIdFor(0)), shardDoneSchema),
        60_000,
      );
      await worker.stop();
      await run;
      expect(done.errorRows).toBe(0);
      expect([...seen.entries()].sort()).toEqual(
        rows.map(([name], k) => [`/r/${name}`, [`${op}:${100 + k}`, `${op}:${100 + k}`]]).sort(),
      );
    } finally {
      flaky.closeAllConnections();
      await new Promise((resolve) => flaky.close(resolve));
    }
  }, 90_000);
});
