import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalAws, startLocalAws } from "../../../test/support/local-aws.ts";
import { waitFor } from "../../../test/support/wait.ts";
import { systemClock } from "../../shared/clock.ts";
import { keys } from "../../shared/keys.ts";
import { silentLogger } from "../../shared/logger.ts";
import { budgetPeerSchema, liveMembers } from "../../shared/schemas/budget.ts";
import { BudgetPeers } from "./budget-peers.ts";

let aws: LocalAws;
const peers: BudgetPeers[] = [];

beforeAll(async () => {
  aws = await startLocalAws("peers-test");
});

afterAll(async () => {
  await Promise.all(peers.map((p) => p.close()));
  await aws?.close();
});

// Short periods so the test runs in seconds; real time, since S3's LastModified is real time.
// ttl well over refresh + 1 s: S3 listings may give LastModified to the second.
const timing = { refreshMs: 150, ttlMs: 2000, joinMs: 450, lingerMs: 100 };

function peer(operationId: string, instanceId: string, divides = true): BudgetPeers {
  const p = new BudgetPeers(
    { store: aws.store, clock: systemClock, logger: silentLogger() },
    { operationId, instanceId, divides, ...timing },
  );
  peers.push(p);
  return p;
}

/** Polls `read` every 20 ms until it returns true (the test's own timeout bounds it). */
async function until(read: () => boolean): Promise<void> {
  while (!read()) await new Promise((r) => setTimeout(r, 20));
}

describe("BudgetPeers (real local S3)", () => {
  it("a joining worker sends nothing until every other worker counts it", async () => {
    const a = peer("op-join", "local-001");
    const b = peer("op-join", "local-002");
    expect(a.divisor()).toBe(0);
    const releaseA = a.hold();
    expect(a.divisor()).toBe(0); // joining
    await until(() => a.divisor() === 1);

    const releaseB = b.hold();
    // At the first moment b may send, a already divides by two.
    await until(() => b.divisor() !== 0);
    expect(b.divisor()).toBe(2);
    expect(a.divisor()).toBe(2);

    // b's rows end: after its linger it marks its record left and a takes the whole budget again.
    releaseB();
    await until(() => a.divisor() === 1);
    const listed = await aws.store.list(keys.budgetPeersPrefix("op-join"));
    expect(listed.filter((k) => k.endsWith(".json"))).toHaveLength(2);
    expect(listed.filter((k) => k.endsWith(".left"))).toEqual([
      expect.stringMatching(/budget-peers\/ilocal-002-[0-9a-f]{8}\.left$/),
    ]);
    releaseA();
  });

  it("counts a worker that died without a word until its record is ttl old", async () => {
    const a = peer("op-dead", "local-003");
    // A worker that wrote its record once, then was killed.
    await aws.store.putJson(keys.budgetPeer("op-dead", "i-dead", "m1"), budgetPeerSchema, {
      v: 1,
      instanceId: "i-dead",
      renewedAt: new Date().toISOString(),
      peers: 1,
    });
    a.hold();
    await until(() => a.divisor() !== 0);
    expect(a.divisor()).toBe(2);
    await until(() => a.divisor() === 1);
  });

  it("keeps records per operation, and marks its own left on close", async () => {
    const a = peer("op-x", "local-004");
    const b = peer("op-y", "local-004");
    a.hold();
    b.hold();
    await until(() => a.divisor() === 1 && b.divisor() === 1);
    await a.close();
    expect(a.divisor()).toBe(0);
    const x = await aws.store.listModified(keys.budgetPeersPrefix("op-x"));
    expect(x).toHaveLength(2);
    expect(liveMembers(x, 0)).toEqual([]);
    const y = await aws.store.listModified(keys.budgetPeersPrefix("op-y"));
    expect(liveMembers(y, 0)).toHaveLength(1);
    expect(() => a.hold()).toThrow(/closed/);
  });

  it("without a budget only reports: sends at once, and its record carries rate, concurrency and mean latency", async () => {
    const a = peer("op-report", "local-005", false);
    let counters = { requests: 0, latencyMsTotal: 0 };
    a.setReporter(() => [
      {
        origin: "https://s.example",
        concurrency: 16,
        inFlight: 3,
        throttled: 1,
        failed: 0,
        ...counters,
      },
    ]);
    expect(a.divisor()).toBe(1);
    a.hold();
    expect(a.divisor()).toBe(1); // no silence: nothing is divided
    counters = { requests: 10, latencyMsTotal: 500 };
    const read = async () => {
      const [key] = await aws.store.list(keys.budgetPeersPrefix("op-report"));
      return key ? aws.store.getJson(key, budgetPeerSchema) : undefined;
    };
    /** The record once its first origin's mean latency is `ms`. */
    const withLatency = (ms: number) =>
      waitFor(`a record with a mean latency of ${ms} ms`, async () => {
        const record = await read();
        return record?.origins[0]?.latencyMs === ms ? record : undefined;
      });
    let record = await withLatency(50);
    expect(record.origins[0]).toMatchObject({ concurrency: 16, inFlight: 3, throttled: 1 });
    // The next answers were slower: the mean is over the requests since the previous record.
    counters = { requests: 20, latencyMsTotal: 2500 };
    record = await withLatency(200);
    expect(record.origins[0]?.requestsPerSecond).toBeGreaterThan(0);
    await a.close();
    expect(
      liveMembers(await aws.store.listModified(keys.budgetPeersPrefix("op-report")), 0),
    ).toEqual([]);
  });
});
