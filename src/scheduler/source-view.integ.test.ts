import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalAws, startLocalAws } from "../../test/support/local-aws.ts";
import { keys } from "../shared/keys.ts";
import { type BudgetPeer, budgetPeerSchema } from "../shared/schemas/budget.ts";
import { SharedReads } from "./shared-reads.ts";
import { readSourceView, type SourceView, summarizeSource } from "./source-view.ts";

let aws: LocalAws;
beforeAll(async () => {
  aws = await startLocalAws("source-view");
});
afterAll(async () => {
  await aws?.close();
});

const origin = (o: string, n: number, extra: Partial<BudgetPeer["origins"][number]> = {}) => ({
  origin: o,
  concurrency: 10 * n,
  inFlight: n,
  requestsPerSecond: 2.5 * n,
  requests: 100 * n,
  throttled: n,
  failed: 0,
  ...extra,
});

function peer(instanceId: string, origins: BudgetPeer["origins"]): BudgetPeer {
  return { v: 1, instanceId, renewedAt: new Date().toISOString(), peers: 2, origins };
}

describe("the source view of an operation", () => {
  it("sums the workers' records per origin, with the budget when there is one", () => {
    const view = summarizeSource([
      peer("a", [origin("https://b.example", 1, { budget: 20, budgetShare: 10 })]),
      peer("b", [
        origin("https://b.example", 2, { budget: 20, budgetShare: 10 }),
        origin("https://a.example", 1),
      ]),
    ]);
    expect(view).toEqual([
      {
        origin: "https://a.example",
        workers: 1,
        requestsPerSecond: 2.5,
        budget: null,
        concurrency: 10,
        inFlight: 1,
        requests: 100,
        throttled: 1,
        failed: 0,
        latencyMs: null,
        instances: null,
      },
      {
        origin: "https://b.example",
        workers: 2,
        requestsPerSecond: 7.5,
        budget: 20,
        concurrency: 30,
        inFlight: 3,
        requests: 300,
        throttled: 3,
        failed: 0,
        latencyMs: null,
        instances: null,
      },
    ]);
  });

  it("gives the mean latency, and with a budget the instances it keeps busy (the fleet's rule)", () => {
    const [budgeted, free] = summarizeSource([
      peer("a", [
        origin("https://a.example", 1, { budget: 300, latencyMs: 100 }),
        origin("https://b.example", 1, { latencyMs: 40 }),
      ]),
      peer("b", [origin("https://a.example", 1, { budget: 300, latencyMs: 300 })]),
    ]);
    // 10 in flight at about 100–300 ms: the median worker sends 66/s, so 300/s keeps 5 busy.
    expect(budgeted).toMatchObject({ origin: "https://a.example", latencyMs: 200, instances: 5 });
    expect(free).toMatchObject({ origin: "https://b.example", latencyMs: 40, instances: null });
  });

  it("reads the fresh records of the operation from S3, and none once they are stale", async () => {
    for (const [id, n] of [
      ["local-001", 1],
      ["local-002", 2],
    ] as const) {
      await aws.store.putJson(
        keys.budgetPeer("op-src", id, "m1"),
        budgetPeerSchema,
        peer(id, [origin("https://b.example", n)]),
      );
    }
    await aws.store.putJson(
      keys.budgetPeer("op-other", "local-003", "m1"),
      budgetPeerSchema,
      peer("local-003", [origin("https://b.example", 5)]),
    );
    const [view] = await readSourceView(aws.store, "op-src", Date.now());
    expect(view).toMatchObject({ workers: 2, requestsPerSecond: 7.5, throttled: 3 });
    // A worker that left marks its record; the status no longer counts it.
    await aws.store.putText(keys.budgetPeerLeft("op-src", "local-002", "m1"), "");
    const [after] = await readSourceView(aws.store, "op-src", Date.now());
    expect(after).toMatchObject({ workers: 1, requestsPerSecond: 2.5, throttled: 1 });
    expect(await readSourceView(aws.store, "op-src", Date.now() + 60_000)).toEqual([]);
  });

  it("shares one read among the callers within a second, then reads again", async () => {
    const put = (n: number) =>
      aws.store.putJson(
        keys.budgetPeer("op-shared", "local-001", "m1"),
        budgetPeerSchema,
        peer("local-001", [origin("https://b.example", n)]),
      );
    await put(1);
    // As the status read shares it (./operations.ts, through ./shared-reads.ts).
    const shared = new SharedReads<SourceView[]>({ ttlMs: 1000 });
    const views = {
      read: (op: string, at: number) =>
        shared.read(op, at, () => readSourceView(aws.store, op, at)),
    };
    const now = Date.now();
    const [a, b] = await Promise.all([views.read("op-shared", now), views.read("op-shared", now)]);
    expect(a).toBe(b);
    await put(2);
    expect((await views.read("op-shared", now + 500))[0]?.concurrency).toBe(10);
    expect((await views.read("op-shared", now + 1000))[0]?.concurrency).toBe(20);
  });
});
