/**
 * The fair-share policy, pure: examples, then properties over any mix of tenants, operations,
 * priorities and loads (fast-check): work-conserving, weights honoured at both levels, and no
 * starvation over many passes of a simulated queue.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type BacklogBound,
  DRAIN_WINDOW_MS,
  DrainMeter,
  type DrainSample,
  dispatchRoom,
  drainRate,
  type FairCandidate,
  fairOrder,
  PRIORITY_DOUBLING,
  priorityWeight,
} from "./fair-order.ts";

const at = (n: number) => new Date(Date.UTC(2026, 0, 1) + n * 1000).toISOString();

function op(
  id: string,
  ready: number,
  inflight = 0,
  { tenant = "t", priority = 0, created = 0 } = {},
): FairCandidate {
  return { id, tenant, priority, ready, inflight, createdAt: at(created) };
}

function counts(plan: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const id of plan) out[id] = (out[id] ?? 0) + 1;
  return out;
}

describe("fairOrder", () => {
  it("serves a small operation submitted behind a big one at once", () => {
    const big = op("big", 10_000, 10, { created: 0 });
    const small = op("small", 10, 0, { created: 60 });
    // The big one has 10 in the pipeline: the small one gets every slot until it has as many.
    expect(fairOrder([big, small], 6)).toEqual(Array(6).fill("small"));
    expect(counts(fairOrder([big, small], 20))).toEqual({ small: 10, big: 10 });
  });

  it("shares between tenants first, then between a tenant's operations", () => {
    const plan = fairOrder(
      [
        op("a1", 100, 0, { tenant: "a", created: 0 }),
        op("a2", 100, 0, { tenant: "a", created: 1 }),
        op("a3", 100, 0, { tenant: "a", created: 2 }),
        op("b1", 100, 0, { tenant: "b", created: 3 }),
      ],
      12,
    );
    expect(counts(plan)).toEqual({ a1: 2, a2: 2, a3: 2, b1: 6 });
    // Interleaved, not in blocks: a small queue stays fair at every point.
    expect(plan.slice(0, 2).sort()).toEqual(["a1", "b1"]);
  });

  it("weights a tenant's operations by priority: +20 doubles the share", () => {
    expect(priorityWeight(0)).toBe(1);
    expect(priorityWeight(PRIORITY_DOUBLING)).toBe(2);
    expect(priorityWeight(-100)).toBeCloseTo(1 / 32);
    const plan = fairOrder([op("hi", 1000, 0, { priority: 20 }), op("lo", 1000, 0)], 30);
    expect(counts(plan)).toEqual({ hi: 20, lo: 10 });
  });

  it("gives nothing beyond what is ready, and nothing to an operation with nothing ready", () => {
    expect(fairOrder([op("a", 2), op("b", 0, 0, { created: 1 })], 10)).toEqual(["a", "a"]);
    expect(fairOrder([], 10)).toEqual([]);
    expect(fairOrder([op("a", 5)], 0)).toEqual([]);
  });

  it("breaks ties by who was served least recently, so equals take turns across passes", () => {
    const a = op("a", 100, 0, { tenant: "x", created: 0 });
    const b = op("b", 100, 0, { tenant: "y", created: 1 });
    expect(fairOrder([a, b], 1)).toEqual(["a"]);
    expect(fairOrder([{ ...a, servedAt: 1 }, b], 1)).toEqual(["b"]);
    expect(
      fairOrder(
        [
          { ...a, servedAt: 1 },
          { ...b, servedAt: 2 },
        ],
        1,
      ),
    ).toEqual(["a"]);
  });
});

describe("dispatchRoom", () => {
  it("bounds the backlog by a minimum or by what runs, whichever is larger", () => {
    const bound = { minQueued: 10, queuedPerRunning: 1 };
    expect(dispatchRoom({ queued: 0, running: 0 }, bound)).toBe(10);
    expect(dispatchRoom({ queued: 4, running: 0 }, bound)).toBe(6);
    expect(dispatchRoom({ queued: 30, running: 40 }, bound)).toBe(10);
    expect(dispatchRoom({ queued: 50, running: 40 }, bound)).toBe(0);
    expect(dispatchRoom({ queued: 0, running: 3 }, { minQueued: 0, queuedPerRunning: 0.5 })).toBe(
      2,
    );
  });
});

describe("the drain term", () => {
  it("lets the backlog hold what workers take in drainSeconds, when that is more", () => {
    const bound = { minQueued: 10, queuedPerRunning: 1, drainSeconds: 1 };
    expect(dispatchRoom({ queued: 0, running: 4, drainPerSecond: 28 }, bound)).toBe(28);
    expect(dispatchRoom({ queued: 12, running: 4, drainPerSecond: 28.2 }, bound)).toBe(17);
    expect(dispatchRoom({ queued: 0, running: 4, drainPerSecond: 3 }, bound)).toBe(10);
    // Without drainSeconds (or a rate) the bound is the one before.
    expect(
      dispatchRoom({ queued: 0, running: 4, drainPerSecond: 28 }, { ...bound, drainSeconds: 0 }),
    ).toBe(10);
    expect(dispatchRoom({ queued: 0, running: 4 }, bound)).toBe(10);
  });

  it("measures the rate from the newest sample a window old, over a window at least", () => {
    expect(drainRate([], 1000)).toBe(0);
    expect(drainRate([{ at: 0, started: 0 }], 1000)).toBe(0);
    // Spanning less than the window: counted over the window (a first fill is no rate).
    expect(
      drainRate(
        [
          { at: 0, started: 0 },
          { at: 100, started: 8 },
        ],
        1000,
      ),
    ).toBe(8);
    const samples: DrainSample[] = [
      { at: 0, started: 0 },
      { at: 500, started: 10 },
      { at: 1000, started: 20 },
      { at: 1500, started: 34 },
      { at: 1700, started: 40 },
    ];
    // From the sample at 500 (the newest ≥ 1 s before 1700) to 1700: 30 in 1.2 s.
    expect(drainRate(samples, 1000)).toBe(25);
  });
});

/**
 * A fleet of `slots` shard slots taking shards of `shardMs` from the queue, and a dispatcher
 * pass at each of `passAt` (ms) doing what Dispatcher.pass does with the policy: measure the
 * drain, compute the room, send. Returns the cap at each pass, the passes that found the queue
 * empty while shards were still to send, and when the last shard started.
 */
function simulateFleet(opts: {
  slots: number;
  shardMs: number;
  shards: number;
  passAt: number[];
  bound: BacklogBound;
}): { caps: number[]; dryPasses: number; lastStartMs: number } {
  const busyUntil: number[] = Array.from({ length: opts.slots }, () => 0);
  let queued = 0;
  let sent = 0;
  let started = 0;
  let lastStartMs = 0;
  // The dispatcher's own meter, fed what started since the pass before.
  const meter = new DrainMeter();
  let noted = 0;
  const caps: number[] = [];
  let dryPasses = 0;
  let t = 0;
  const runUntil = (until: number) => {
    for (; t <= until; t++) {
      for (let k = 0; k < busyUntil.length && queued > 0; k++) {
        if (busyUntil[k]! <= t) {
          busyUntil[k] = t + opts.shardMs;
          queued--;
          started++;
          lastStartMs = t;
        }
      }
    }
  };
  for (const at of opts.passAt) {
    runUntil(at);
    if (queued === 0 && sent > 0 && sent < opts.shards) dryPasses++;
    const drainPerSecond = meter.note(at, started - noted);
    noted = started;
    const running = busyUntil.filter((b) => b > at).length;
    const room = dispatchRoom({ queued, running, drainPerSecond }, opts.bound);
    caps.push(room + queued);
    const send = Math.min(room, opts.shards - sent);
    sent += send;
    queued += send;
  }
  return { caps, dryPasses, lastStartMs };
}

describe("the drain term over a simulated fleet", () => {
  const passes = (n: number, every: number) => Array.from({ length: n }, (_, k) => k * every);

  it("keeps short shards flowing between passes where the bound alone starved the workers", () => {
    // bench/pipeline at 100,000 rows: 2 instances × 2 slots, 50 shards of ~140 ms, 500 ms passes.
    const run = (drainSeconds: number) =>
      simulateFleet({
        slots: 4,
        shardMs: 140,
        shards: 50,
        passAt: passes(20, 500),
        bound: { minQueued: 10, queuedPerRunning: 1, drainSeconds },
      });
    const before = run(0);
    const after = run(1);
    // Without it: 10 shards a pass, found gone at every pass (workers idle until the next one).
    expect(before.dryPasses).toBeGreaterThanOrEqual(3);
    expect(before.lastStartMs).toBeGreaterThanOrEqual(2000);
    // With it the backlog doubles while found gone, up to what the fleet takes: dry once at
    // most, and the last shard starts within a pass of 50 × 140 ms ÷ 4 slots.
    expect(after.dryPasses).toBeLessThanOrEqual(1);
    expect(after.lastStartMs).toBeLessThan(1750 + 140);
  });

  it("never holds more than drainSeconds of what the fleet can take, however far apart passes are", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 20, max: 3000 }),
        fc.array(fc.integer({ min: 1, max: 4000 }), { minLength: 2, maxLength: 25 }),
        fc.double({ min: 0, max: 3, noNaN: true }),
        (slots, shardMs, gaps, drainSeconds) => {
          const passAt = gaps.map((_, k) => gaps.slice(0, k).reduce((a, b) => a + b, 0));
          const bound = { minQueued: 10, queuedPerRunning: 1, drainSeconds };
          const { caps } = simulateFleet({ slots, shardMs, shards: 100_000, passAt, bound });
          // A slot starts at most one shard per shardMs (plus one) in any window.
          const capacityPerSecond = slots * (1000 / shardMs + 1000 / DRAIN_WINDOW_MS);
          const most = Math.max(10, slots, Math.ceil(drainSeconds * capacityPerSecond));
          for (const cap of caps) expect(cap).toBeLessThanOrEqual(most);
        },
      ),
      { numRuns: 200 },
    );
  });
});

const candidatesArb = fc
  .array(
    fc.record({
      tenant: fc.constantFrom("a", "b", "c"),
      priority: fc.integer({ min: -100, max: 100 }),
      ready: fc.integer({ min: 0, max: 60 }),
      inflight: fc.integer({ min: 0, max: 30 }),
      created: fc.integer({ min: 0, max: 1000 }),
    }),
    { minLength: 1, maxLength: 7 },
  )
  .map((rows) =>
    rows.map((r, k) => op(`op${k}`, r.ready, r.inflight, { ...r, created: r.created })),
  );

describe("fairOrder properties", () => {
  it("is work-conserving and never exceeds what is ready", () => {
    fc.assert(
      fc.property(candidatesArb, fc.integer({ min: 0, max: 200 }), (cands, slots) => {
        const plan = fairOrder(cands, slots);
        const ready = cands.reduce((s, c) => s + c.ready, 0);
        expect(plan.length).toBe(Math.min(slots, ready));
        const got = counts(plan);
        for (const c of cands) expect(got[c.id] ?? 0).toBeLessThanOrEqual(c.ready);
        // The candidates' order does not change the plan.
        expect(fairOrder([...cands].reverse(), slots)).toEqual(plan);
      }),
    );
  });

  it("honours the weights: a slot goes only where load per weight is least (both levels)", () => {
    fc.assert(
      fc.property(candidatesArb, fc.integer({ min: 1, max: 200 }), (cands, slots) => {
        const got = counts(fairOrder(cands, slots));
        const final = new Map(cands.map((c) => [c.id, c.inflight + (got[c.id] ?? 0)]));
        const left = (c: FairCandidate) => c.ready - (got[c.id] ?? 0) > 0;
        const tenantLoad = new Map<string, number>();
        for (const c of cands) {
          tenantLoad.set(c.tenant, (tenantLoad.get(c.tenant) ?? 0) + final.get(c.id)!);
        }
        for (const i of cands) {
          if ((got[i.id] ?? 0) === 0) continue;
          for (const j of cands) {
            if (!left(j)) continue;
            if (i.tenant === j.tenant) {
              // When i got its last slot, its load per weight was at most j's.
              const wi = priorityWeight(i.priority);
              const wj = priorityWeight(j.priority);
              expect((final.get(i.id)! - 1) / wi).toBeLessThanOrEqual(final.get(j.id)! / wj + 1e-9);
            } else {
              expect(tenantLoad.get(i.tenant)! - 1).toBeLessThanOrEqual(tenantLoad.get(j.tenant)!);
            }
          }
        }
      }),
    );
  });

  it("starves no one: over passes of a simulated queue, every operation with work is served within a bounded gap", () => {
    fc.assert(
      fc.property(
        candidatesArb,
        fc.integer({ min: 1, max: 4 }),
        fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 60, maxLength: 60 }),
        (start, duration, slotsPerPass) => {
          // Every candidate has far more work than the run can give it.
          const ops = start.map((c) => ({ ...c, ready: 10_000 }));
          const tenants = new Set(ops.map((o) => o.tenant)).size;
          const bound = (ops.length + 1) * (tenants + 1) * (duration + 1) + duration + 1;
          // Shards in the pipeline, each done `duration` passes after it was sent.
          let pipeline: { id: string; doneAt: number }[] = ops.flatMap((o) =>
            Array.from({ length: o.inflight }, () => ({ id: o.id, doneAt: duration })),
          );
          const lastServed = new Map<string, number>(ops.map((o) => [o.id, 0]));
          const servedAt = new Map<string, number>();
          let serial = 0;
          for (const [pass, slots] of slotsPerPass.entries()) {
            pipeline = pipeline.filter((s) => s.doneAt > pass);
            const cands = ops.map((o) => ({
              ...o,
              inflight: pipeline.filter((s) => s.id === o.id).length,
              ...(servedAt.has(o.id) ? { servedAt: servedAt.get(o.id)! } : {}),
            }));
            for (const id of fairOrder(cands, slots)) {
              servedAt.set(id, ++serial);
              lastServed.set(id, pass);
              pipeline.push({ id, doneAt: pass + duration });
            }
            for (const o of ops) expect(pass - lastServed.get(o.id)!).toBeLessThanOrEqual(bound);
          }
        },
      ),
    );
  });
});
