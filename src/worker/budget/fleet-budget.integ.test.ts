/**
 * The done-when of the request budget (issue 18): four whole workers (consumer + processor +
 * http-enrich, in process) on the real local SQS/S3 share an operation's budget of N requests
 * a second against a source that answers 429 above N a second. Two workers start first and two
 * join later, so the budget is re-divided while the source is busy. And without a budget, two
 * workers' adaptive concurrency finds such a source's limit by itself; and a whole worker's POST
 * retries carry the row's idempotency key.
 */
import type { RequestListener } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type HttpSource, startHttpSource } from "../../../test/support/http-source.ts";
import { freshQueues, type LocalAws, startLocalAws } from "../../../test/support/local-aws.ts";
import { writeManifest } from "../../../test/support/manifests.ts";
import { waitFor } from "../../../test/support/wait.ts";
import { textRows, writeSlice } from "../../../test/support/worker.ts";
import type { ProvisionedResources } from "../../local/provision.ts";
import { parseEgressAllow } from "../../shared/egress.ts";
import { keys, shardIdFor } from "../../shared/keys.ts";
import { silentLogger } from "../../shared/logger.ts";
import { type BudgetPeer, budgetPeerSchema } from "../../shared/schemas/budget.ts";
import type { Cell } from "../../shared/schemas/cells.ts";
import { type ShardDone, shardDoneSchema } from "../../shared/schemas/shard.ts";
import { Worker } from "../worker.ts";

/** The source's limit and the operation's budget. */
const N = 40;
const SHARDS = 8;
const ROWS_PER_SHARD = 60;

let aws: LocalAws;
let source: HttpSource;
/** Arrival time of every request the source saw, and how many it refused. */
const arrivals: number[] = [];
let refused = 0;

beforeAll(async () => {
  aws = await startLocalAws("budget-fleet");
  source = await startHttpSource(
    limitedTo(N, 5, (at, wasRefused) => {
      arrivals.push(at);
      if (wasRefused) refused++;
    }),
  );
});

afterAll(async () => {
  await source?.close();
  await aws?.close();
});

type Queues = ProvisionedResources["queues"];

/**
 * A source that takes `limit` requests in any second and answers the rest 429 at once; it answers
 * what it takes after `latencyMs`. `seen` hears of every request.
 */
function limitedTo(
  limit: number,
  latencyMs: number,
  seen: (at: number, refused: boolean) => void,
): RequestListener {
  const taken: number[] = [];
  return (req, res) => {
    const now = Date.now();
    while (taken.length > 0 && taken[0]! <= now - 1000) taken.shift();
    const refused = taken.length >= limit;
    seen(now, refused);
    if (refused) {
      res.writeHead(429, { "retry-after": "1" });
      res.end();
      return;
    }
    taken.push(now);
    setTimeout(() => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ v: req.url }));
    }, latencyMs);
  };
}

/** SHARDS slices of ROWS_PER_SHARD rows, each row named after its shard. */
function numberedShards(): Array<{ start: number; rows: Cell[][] }> {
  return Array.from({ length: SHARDS }, (_, s) => ({
    start: s * ROWS_PER_SHARD,
    rows: textRows(ROWS_PER_SHARD).map(([cell]) => [`${cell} of ${s}`]),
  }));
}

/** Writes the operation's manifest (one column, `name`) and its slices, and queues them. */
async function queueOperation(
  queues: Queues,
  op: string,
  task: { name: string; options: Record<string, unknown> },
  slices: Array<{ start: number; rows: Cell[][] }>,
): Promise<void> {
  await writeManifest(aws.store, op, ["name"], task);
  const messages = [];
  for (const [s, { start, rows }] of slices.entries()) {
    messages.push(await writeSlice(aws.store, op, shardIdFor(s), start, rows));
  }
  await aws.queue.sendShards(queues.work, messages);
}

/** A whole worker (consumer, processor, http-enrich) running on `queues` until stopped. */
function startWorker(queues: Queues, instanceId: string): { stop(): Promise<void> } {
  const worker = new Worker(
    { store: aws.store, queue: aws.queue, logger: silentLogger() },
    {
      instanceId,
      market: "spot",
      pluginDir: ".",
      egress: parseEgressAllow("127.0.0.0/8"),
      queues,
      pollWaitSeconds: 1,
      visibilityTimeoutSeconds: 30,
    },
  );
  const run = worker.run();
  return {
    async stop() {
      await worker.stop();
      await run;
    },
  };
}

/** Every shard's commit marker, in shard order; `onPoll` runs at every look. */
async function commits(
  op: string,
  shards: number,
  timeoutMs: number,
  onPoll: () => Promise<void> = async () => {},
): Promise<ShardDone[]> {
  const done = [];
  for (let s = 0; s < shards; s++) {
    done.push(
      await waitFor(
        `shard ${s} committed`,
        async () => {
          await onPoll();
          return aws.store.getJson(keys.done(op, shardIdFor(s)), shardDoneSchema);
        },
        timeoutMs,
      ),
    );
  }
  return done;
}

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
    await queueOperation(
      queues,
      op,
      {
        name: "http-enrich",
        options: {
          url: `${source.url}/r/{name}`,
          results: { v: "v" },
          rateLimit: { requestsPerSecond: N },
        },
      },
      numberedShards(),
    );

    const workers: Array<{ stop(): Promise<void> }> = [];
    const start = (k: number) => workers.push(startWorker(queues, `local-00${k}`));
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

    const done = await commits(op, SHARDS, 90_000);
    await Promise.all(workers.map((w) => w.stop()));

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
    const slow = await startHttpSource(
      limitedTo(N, LATENCY_MS, (at, refused) => times.push({ at, refused })),
    );
    try {
      const queues = await freshQueues(aws);
      const op = "op-adaptive";
      await queueOperation(
        queues,
        op,
        { name: "http-enrich", options: { url: `${slow.url}/r/{name}`, results: { v: "v" } } },
        numberedShards(),
      );
      const workers = [1, 2].map((k) => startWorker(queues, `local-10${k}`));
      // Without a budget the workers still report the source (for the status): the concurrency
      // they settled at, read while the last shards run.
      let reported: BudgetPeer[] = [];
      const done = await commits(op, SHARDS, 120_000, async () => {
        const listed = await aws.store.list(keys.budgetPeersPrefix(op));
        const records = await Promise.all(
          listed
            .filter((k) => k.endsWith(".json"))
            .map((key) => aws.store.getJson(key, budgetPeerSchema)),
        );
        const fresh = records.filter((r): r is BudgetPeer => r !== undefined);
        if (fresh.length > 0) reported = fresh;
      });
      await Promise.all(workers.map((w) => w.stop()));

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
      await slow.close();
    }
  }, 180_000);

  it("a worker's POST and its retry carry the same Idempotency-Key, the operation id and the row index", async () => {
    // Every row's first attempt is answered 503; the retry succeeds.
    const seen = new Map<string, string[]>();
    const flaky = await startHttpSource((req, res) => {
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
    try {
      const queues = await freshQueues(aws);
      const op = "op-idempotent";
      const rows = textRows(5).map(([cell]) => [`${cell}`.replace(" ", "-")]);
      await queueOperation(
        queues,
        op,
        {
          name: "http-enrich",
          options: {
            url: `${flaky.url}/r/{name}`,
            method: "POST",
            body: "{}",
            results: { v: "v" },
            backoffMs: 10,
          },
        },
        [{ start: 100, rows }],
      );
      const worker = startWorker(queues, "local-201");
      const [done] = await commits(op, 1, 60_000);
      await worker.stop();
      expect(done?.errorRows).toBe(0);
      expect([...seen.entries()].sort()).toEqual(
        rows.map(([name], k) => [`/r/${name}`, [`${op}:${100 + k}`, `${op}:${100 + k}`]]).sort(),
      );
    } finally {
      await flaky.close();
    }
  }, 90_000);
});
