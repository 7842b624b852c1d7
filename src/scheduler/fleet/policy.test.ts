import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  fleetInstance,
  fleetState,
  launchesOf,
  operationState,
  POLICY_NOW,
} from "../../../test/support/fleet.ts";
import { CapacityConfigError, FLEET_TAGS, type Pool, poolKey } from "../../shared/capacity.ts";
import { ConfigError } from "../../shared/errors.ts";
import { availablePools } from "./policy/market-choice.ts";
import { DEFAULT_BOOT_DEADLINE_MS } from "./policy/options.ts";
import { findOrphans, planRebalanceScaleIn, planScaleIn } from "./policy/scale-in.ts";
import { fleetSpendUsd, hourlyPrice, launchRoom } from "./policy/sizing.ts";
import { findStragglers } from "./policy/stragglers.ts";
import {
  emptyFleetMemory,
  type FleetDecision,
  type FleetInstance,
  type FleetMemory,
  type FleetPolicyOptions,
  type FleetState,
  fleetInstancesFrom,
  isLive,
  type LaunchDecision,
  type OperationState,
  type PoolFailure,
  type PriceTable,
  planFleet,
  recordLaunchError,
  recordLaunchOutcome,
  resolveFleetPolicy,
  toLaunchRequest,
  withSpotSignal,
} from "./policy.ts";

const NOW = POLICY_NOW;
const MIN = 60_000;
const TYPES = ["c7g.large", "c6g.large", "m7g.large", "c5.large"];
const SUBNETS = ["subnet-a", "subnet-b", "subnet-c"];

const poolsOf = (types: number, subnets: number): Pool[] =>
  TYPES.slice(0, types).flatMap((instanceType) =>
    SUBNETS.slice(0, subnets).map((subnetId) => ({ instanceType, subnetId })),
  );

const PRICES: PriceTable = {
  spot: { "c7g.large": 0.03, "c6g.large": 0.028, "m7g.large": 0.04, "c5.large": 0.035 },
  "on-demand": { "c7g.large": 0.0725, "c6g.large": 0.068, "m7g.large": 0.0816, "c5.large": 0.085 },
};

const inst = (id: string, extra: Partial<FleetInstance> = {}): FleetInstance =>
  fleetInstance(id, { launchedAt: NOW - 10 * MIN, ...extra });

const state = (extra: Partial<FleetState> = {}): FleetState =>
  fleetState({ prices: PRICES, ...extra });

const ofType = <T extends FleetDecision["type"]>(decisions: FleetDecision[], type: T) =>
  decisions.filter((d): d is Extract<FleetDecision, { type: T }> => d.type === type);

// ------------------------------------------------------------------------------------------
// Arbitraries

const poolsArb = fc
  .record({ types: fc.integer({ min: 1, max: 4 }), subnets: fc.integer({ min: 1, max: 3 }) })
  .map(({ types, subnets }) => poolsOf(types, subnets));

const pricesArb: fc.Arbitrary<PriceTable> = fc
  .array(
    fc.record({
      spot: fc.option(fc.double({ min: 0.005, max: 1, noNaN: true }), { nil: undefined }),
      od: fc.option(fc.double({ min: 0.01, max: 2, noNaN: true }), { nil: undefined }),
    }),
    { minLength: TYPES.length, maxLength: TYPES.length },
  )
  .map((rows) => {
    const spot: Record<string, number> = {};
    const od: Record<string, number> = {};
    rows.forEach((r, i) => {
      if (r.spot !== undefined) spot[TYPES[i]!] = r.spot;
      if (r.od !== undefined) od[TYPES[i]!] = r.od;
    });
    return { spot, "on-demand": od };
  });

const failuresArb = (pools: Pool[]): fc.Arbitrary<PoolFailure[]> =>
  fc.array(
    fc.record({
      market: fc.constantFrom("spot" as const, "on-demand" as const),
      pool: fc.constantFrom(...pools),
      at: fc.integer({ min: NOW - 12 * MIN, max: NOW }),
      code: fc.constant("InsufficientInstanceCapacity"),
      message: fc.constant("no capacity"),
    }),
    { maxLength: 24 },
  );

const runningArb = fc.uniqueArray(
  fc.record({
    shardId: fc.string({ minLength: 1, maxLength: 4 }),
    startedAt: fc.integer({ min: NOW - 60 * MIN, max: NOW }),
    interruptions: fc.nat(3),
  }),
  { maxLength: 12, selector: (s) => s.shardId },
);

const operationsArb: fc.Arbitrary<OperationState[]> = fc.uniqueArray(
  fc.record({
    id: fc.constantFrom("op-1", "op-2", "op-3"),
    pendingShards: fc.oneof(fc.constant(0), fc.nat(120)),
    running: runningArb,
    completedShardMs: fc.array(fc.integer({ min: 1000, max: 20 * MIN }), { maxLength: 10 }),
  }),
  { maxLength: 3, selector: (o) => o.id },
);

const instancesArb: fc.Arbitrary<FleetInstance[]> = fc.uniqueArray(
  fc.record(
    {
      id: fc.integer({ min: 1, max: 999 }).map((n) => `i-${n}`),
      operationId: fc.constantFrom("op-1", "op-2", "op-3", "op-gone"),
      role: fc.constantFrom("worker" as const, "straggler" as const),
      market: fc.constantFrom("spot" as const, "on-demand" as const),
      instanceType: fc.constantFrom(...TYPES, "x9.unknown"),
      state: fc.constantFrom(
        "pending" as const,
        "running" as const,
        "running" as const,
        "stopped" as const,
        "terminated" as const,
        "shutting-down" as const,
      ),
      launchedAt: fc.integer({ min: NOW - 60 * MIN, max: NOW }),
      runningShards: fc.oneof(fc.constant(0), fc.nat(3)),
      lastBusyAt: fc.integer({ min: NOW - 60 * MIN, max: NOW }),
      // Spot signals from EventBridge (optional keys: present or not).
      interruptionWarnedAt: fc.integer({ min: NOW - 5 * MIN, max: NOW }),
      rebalanceRecommendedAt: fc.integer({ min: NOW - 30 * MIN, max: NOW }),
    },
    {
      requiredKeys: [
        "id",
        "operationId",
        "role",
        "market",
        "instanceType",
        "state",
        "launchedAt",
        "runningShards",
      ],
    },
  ),
  { maxLength: 12, selector: (i) => i.id },
);

const scenarioArb = poolsArb.chain((pools) =>
  fc.record({
    pools: fc.constant(pools),
    prices: pricesArb,
    failures: failuresArb(pools),
    operations: operationsArb,
    instances: instancesArb,
    maxInstances: fc.nat(80),
    maxHourlyUsd: fc.option(
      fc.integer({ min: 0, max: 300 }).map((cents) => cents / 100),
      { nil: undefined },
    ),
    shardsPerInstance: fc.integer({ min: 1, max: 4 }),
    maxStragglerInstances: fc.nat(6),
  }),
);

type Scenario = typeof scenarioArb extends fc.Arbitrary<infer T> ? T : never;

function plan(s: Scenario) {
  const options: FleetPolicyOptions = {
    pools: s.pools,
    maxInstances: s.maxInstances,
    shardsPerInstance: s.shardsPerInstance,
    maxStragglerInstances: s.maxStragglerInstances,
    ...(s.maxHourlyUsd === undefined ? {} : { maxHourlyUsd: s.maxHourlyUsd }),
  };
  const fleetState = state({
    operations: s.operations,
    instances: s.instances,
    prices: s.prices,
    memory: { ...emptyFleetMemory(), poolFailures: s.failures },
  });
  const result = planFleet(fleetState, NOW, options);
  const terminated = new Set(ofType(result.decisions, "terminate").flatMap((d) => d.ids));
  const live = s.instances.filter((i) => isLive(i.state) && !terminated.has(i.id));
  return { options, result, live, terminated };
}

const worst = (d: LaunchDecision, prices: PriceTable) =>
  Math.max(0, ...d.pools.map((p) => hourlyPrice(prices, d.market, p.instanceType) ?? 0));

// ------------------------------------------------------------------------------------------

describe("caps", () => {
  it("launchRoom respects both the instance cap and the budget exactly", () => {
    expect(launchRoom({ liveInstances: 3, spendUsd: 0, unitPriceUsd: 1, maxInstances: 10 })).toBe(
      7,
    );
    expect(
      launchRoom({
        liveInstances: 3,
        spendUsd: 0.3,
        unitPriceUsd: 0.1,
        maxInstances: 10,
        maxHourlyUsd: 0.6,
      }),
    ).toBe(3);
    expect(
      launchRoom({
        liveInstances: 0,
        spendUsd: 2,
        unitPriceUsd: 0.1,
        maxInstances: 10,
        maxHourlyUsd: 1,
      }),
    ).toBe(0);
  });

  it("spot prices fall back to on-demand; unknown running instances count at the highest price", () => {
    const prices: PriceTable = { spot: { a: 0.1 }, "on-demand": { a: 0.3, b: 0.5 } };
    expect(hourlyPrice(prices, "spot", "b")).toBe(0.5);
    expect(hourlyPrice(prices, "on-demand", "c")).toBeUndefined();
    expect(hourlyPrice(prices, "spot", "constructor")).toBeUndefined();
    expect(fleetSpendUsd([{ market: "spot", instanceType: "zz" }], prices)).toBe(0.5);
  });

  it("property: live + launched instances never exceed maxInstances; spend never exceeds the budget", () => {
    fc.assert(
      fc.property(scenarioArb, (s) => {
        const { result, live } = plan(s);
        const launched = launchesOf(result.decisions);
        const total = launched.reduce((a, d) => a + d.count, 0);
        expect(launched.every((d) => d.count > 0 && d.pools.length > 0)).toBe(true);
        expect(total).toBeLessThanOrEqual(Math.max(0, s.maxInstances - live.length));
        if (s.maxHourlyUsd !== undefined && total > 0) {
          const spend =
            fleetSpendUsd(live, s.prices) +
            launched.reduce((a, d) => a + d.count * worst(d, s.prices), 0);
          expect(spend).toBeLessThanOrEqual(s.maxHourlyUsd + 1e-9);
        }
        // Straggler capacity has its own cap too.
        const stragglerLaunches = launched.filter((d) => d.role === "straggler");
        const liveStragglers = live.filter((i) => i.role === "straggler").length;
        const newStragglers = stragglerLaunches.reduce((a, d) => a + d.count, 0);
        if (newStragglers > 0) {
          expect(liveStragglers + newStragglers).toBeLessThanOrEqual(s.maxStragglerInstances);
          expect(stragglerLaunches.every((d) => d.market === "on-demand")).toBe(true);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it("property: per operation, spot worker requests are batches of 5 or 6 except one smaller last one", () => {
    fc.assert(
      fc.property(scenarioArb, (s) => {
        const { result } = plan(s);
        for (const o of s.operations) {
          const spot = launchesOf(result.decisions).filter(
            (d) => d.operationId === o.id && d.role === "worker" && d.market === "spot",
          );
          const counts = spot.map((d) => d.count);
          expect(counts.slice(0, -1).every((c) => c === 5 || c === 6)).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("sizes from the backlog the scheduler counts: 34 shards at 2 per instance → 17 spot as 6+6+5", () => {
    const { decisions } = planFleet(state({ operations: [operationState("op-1", 34)] }), NOW, {
      pools: poolsOf(2, 3),
      maxInstances: 50,
    });
    expect(launchesOf(decisions).map((d) => [d.market, d.count])).toEqual([
      ["spot", 6],
      ["spot", 6],
      ["spot", 5],
    ]);
    expect(launchesOf(decisions)[0]!.reason).toContain(
      "backlog 34 shards → 17 instance(s), 0 live",
    );
  });

  it("launches nothing more when live instances already cover the backlog", () => {
    const instances = Array.from({ length: 5 }, (_, n) => inst(`i-${n}`));
    const { decisions } = planFleet(
      state({ operations: [operationState("op-1", 10)], instances }),
      NOW,
      {
        pools: poolsOf(1, 1),
        shardsPerInstance: 2,
      },
    );
    expect(launchesOf(decisions)).toEqual([]);
  });

  it("takes instances scaled in this round out of the count, so the caps see the room", () => {
    const idle = inst("i-idle", { runningShards: 0, lastBusyAt: NOW - 10 * MIN });
    const { decisions } = planFleet(
      state({ operations: [operationState("op-1", 10)], instances: [idle] }),
      NOW,
      { pools: poolsOf(1, 1), maxInstances: 5 },
    );
    expect(ofType(decisions, "terminate")[0]!.ids).toEqual(["i-idle"]);
    expect(launchesOf(decisions).map((d) => d.count)).toEqual([5]);
  });
});

describe("fallback", () => {
  const pools = poolsOf(2, 2);
  const options: FleetPolicyOptions = { pools, maxInstances: 40 };

  it("property: never a cooling pool; on-demand workers only once every spot pool is cooling", () => {
    fc.assert(
      fc.property(scenarioArb, (s) => {
        const { result } = plan(s);
        for (const d of launchesOf(result.decisions)) {
          const free = new Set(
            availablePools(s.pools, d.market, s.failures, NOW, 300_000).map(poolKey),
          );
          expect(d.pools.every((p) => free.has(poolKey(p)))).toBe(true);
          if (d.market === "on-demand" && d.role === "worker") {
            expect(availablePools(s.pools, "spot", s.failures, NOW, 300_000)).toEqual([]);
          }
        }
      }),
      { numRuns: 1000 },
    );
  });

  it("moves the next request off the pools that reported capacity errors", () => {
    const first = planFleet(state({ operations: [operationState("op-1", 10)] }), NOW, options);
    const d = launchesOf(first.decisions)[0]!;
    expect(d.pools).toEqual(pools);
    const memory = recordLaunchOutcome(
      first.memory,
      d,
      {
        launched: [],
        errors: [
          {
            pool: pools[0]!,
            code: "InsufficientInstanceCapacity",
            message: "none",
            kind: "capacity",
          },
          { pool: pools[1]!, code: "SpotMaxPriceTooLow", message: "low", kind: "capacity" },
        ],
      },
      NOW,
    );
    const next = planFleet(
      state({ operations: [operationState("op-1", 10)], memory }),
      NOW + 1000,
      options,
    );
    expect(launchesOf(next.decisions)[0]!.market).toBe("spot");
    expect(launchesOf(next.decisions)[0]!.pools).toEqual(pools.slice(2));
    // After the cooling period the pools come back.
    const later = planFleet(
      state({ operations: [operationState("op-1", 10)], memory }),
      NOW + 5 * MIN,
      {
        ...options,
        capacityDeadlineMs: 10 * MIN,
      },
    );
    expect(launchesOf(later.decisions)[0]!.pools).toEqual(pools);
  });

  it("sends the unfulfilled part to on-demand when every spot pool failed, then waits, then fails", () => {
    const deadline = 5 * MIN;
    let memory: FleetMemory = emptyFleetMemory();
    const allFail = (d: LaunchDecision) => ({
      launched: [],
      errors: d.pools.map((pool) => ({
        pool,
        code: "InsufficientInstanceCapacity",
        message: `no ${d.market} capacity`,
        kind: "capacity" as const,
      })),
    });
    const ops = [operationState("op-1", 10)];

    const t0 = planFleet(state({ operations: ops, memory }), NOW, options);
    expect(launchesOf(t0.decisions).map((d) => d.market)).toEqual(["spot"]);
    memory = recordLaunchOutcome(
      t0.memory,
      launchesOf(t0.decisions)[0]!,
      allFail(launchesOf(t0.decisions)[0]!),
      NOW,
    );

    const t1 = planFleet(state({ operations: ops, memory }), NOW + 1000, options);
    const od = launchesOf(t1.decisions);
    expect(od.map((d) => [d.market, d.count])).toEqual([["on-demand", 5]]);
    expect(od[0]!.reason).toContain("every spot pool is cooling");
    memory = recordLaunchOutcome(t1.memory, od[0]!, allFail(od[0]!), NOW + 1000);

    const t2 = planFleet(state({ operations: ops, memory }), NOW + 2000, options);
    expect(launchesOf(t2.decisions)).toEqual([]);
    const waiting = ofType(t2.decisions, "setWaiting");
    expect(waiting).toHaveLength(1);
    expect(waiting[0]!.since).toBe(NOW);
    expect(waiting[0]!.reason).toMatch(
      /no spot capacity .*InsufficientInstanceCapacity.*no on-demand capacity/,
    );
    memory = t2.memory;

    // The same reason is not published again.
    const t3 = planFleet(state({ operations: ops, memory }), NOW + 3000, options);
    expect(ofType(t3.decisions, "setWaiting")).toEqual([]);
    expect(ofType(t3.decisions, "failOperation")).toEqual([]);
    memory = t3.memory;

    const t4 = planFleet(state({ operations: ops, memory }), NOW + deadline, options);
    const failed = ofType(t4.decisions, "failOperation");
    expect(failed).toHaveLength(1);
    expect(failed[0]!.code).toBe("CAPACITY_DEADLINE");
    expect(failed[0]!.message).toMatch(
      /^no capacity found within 300 s .*InsufficientInstanceCapacity/,
    );
    expect(launchesOf(t4.decisions)).toEqual([]);

    const t5 = planFleet(
      state({ operations: ops, memory: t4.memory }),
      NOW + deadline + 1000,
      options,
    );
    expect(ofType(t5.decisions, "failOperation")).toEqual([]);
  });

  it("clears waiting once capacity is live again", () => {
    const memory: FleetMemory = {
      ...emptyFleetMemory(),
      operations: { "op-1": { unfulfilledSince: NOW - MIN, waiting: "no capacity" } },
    };
    const { decisions, memory: next } = planFleet(
      state({ operations: [operationState("op-1", 4)], instances: [inst("i-1")], memory }),
      NOW,
      options,
    );
    expect(ofType(decisions, "clearWaiting")).toEqual([
      { type: "clearWaiting", operationId: "op-1" },
    ]);
    expect(next.operations["op-1"]).toMatchObject({
      unfulfilledSince: undefined,
      waiting: undefined,
    });
  });

  it("waits with the budget as the reason when the budget leaves nothing", () => {
    const { decisions } = planFleet(state({ operations: [operationState("op-1", 4)] }), NOW, {
      ...options,
      maxHourlyUsd: 0.01,
    });
    expect(ofType(decisions, "setWaiting")[0]!.reason).toMatch(/hourly budget \$0.01\/h reached/);
  });

  it("property: never fails before the capacity deadline, and fails exactly once after it", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1000, max: 10 * MIN }),
        fc.array(fc.integer({ min: 1, max: 2 * MIN }), { minLength: 1, maxLength: 30 }),
        (deadline, steps) => {
          // maxInstances 0: nothing can ever be launched.
          const opts = { pools, maxInstances: 0, capacityDeadlineMs: deadline };
          let memory = emptyFleetMemory();
          let now = NOW;
          let fails = 0;
          for (const step of steps) {
            const out = planFleet(
              state({ operations: [operationState("op-1", 3)], memory }),
              now,
              opts,
            );
            const f = ofType(out.decisions, "failOperation");
            if (f.length > 0) expect(now - NOW).toBeGreaterThanOrEqual(deadline);
            else if (fails === 0) expect(now - NOW).toBeLessThan(deadline);
            fails += f.length;
            memory = out.memory;
            now += step;
          }
          expect(fails).toBeLessThanOrEqual(1);
        },
      ),
    );
  });

  it("fails an operation loudly on a config error, once, and launches nothing more for it", () => {
    const first = planFleet(state({ operations: [operationState("op-1", 10)] }), NOW, options);
    const d = launchesOf(first.decisions)[0]!;
    const memory = recordLaunchOutcome(
      first.memory,
      d,
      {
        launched: [],
        errors: [
          {
            code: "InvalidLaunchTemplateId.NotFound",
            message: "The specified launch template, with template ID lt-0abc, does not exist.",
            kind: "config",
          },
        ],
      },
      NOW,
    );
    // A config error is not a capacity error: no pool cools.
    expect(memory.poolFailures).toEqual([]);
    const next = planFleet(
      state({ operations: [operationState("op-1", 10)], memory }),
      NOW + 1000,
      options,
    );
    expect(launchesOf(next.decisions)).toEqual([]);
    const [failed] = ofType(next.decisions, "failOperation");
    expect(failed!.code).toBe("CAPACITY_CONFIG");
    expect(failed!.message).toContain("InvalidLaunchTemplateId.NotFound");
    expect(failed!.message).toContain("retrying cannot help");
    const again = planFleet(
      state({ operations: [operationState("op-1", 10)], memory: next.memory }),
      NOW + 2000,
      options,
    );
    expect(again.decisions).toEqual([]);
  });

  it("fails with CAPACITY_PERMISSION when the launch call itself was refused", () => {
    const first = planFleet(state({ operations: [operationState("op-1", 10)] }), NOW, options);
    const d = launchesOf(first.decisions)[0]!;
    const err = new CapacityConfigError("permission", "UnauthorizedOperation", "not authorized");
    const memory = recordLaunchError(first.memory, d, err);
    expect(recordLaunchError(first.memory, d, new Error("socket hang up"))).toBe(first.memory);
    const next = planFleet(
      state({ operations: [operationState("op-1", 10)], memory }),
      NOW + 1000,
      options,
    );
    expect(ofType(next.decisions, "failOperation")[0]).toMatchObject({
      code: "CAPACITY_PERMISSION",
      message: expect.stringContaining("iam:PassRole"),
    });
  });

  it("an error that names no pool cools every pool of its request", () => {
    const d: LaunchDecision = {
      type: "launch",
      operationId: "op-1",
      role: "worker",
      market: "spot",
      count: 5,
      pools,
      reason: "",
    };
    const memory = recordLaunchOutcome(
      emptyFleetMemory(),
      d,
      { launched: [], errors: [{ code: "UnfulfillableCapacity", message: "x", kind: "capacity" }] },
      NOW,
    );
    expect(availablePools(pools, "spot", memory.poolFailures, NOW + 1, 300_000)).toEqual([]);
    expect(availablePools(pools, "on-demand", memory.poolFailures, NOW + 1, 300_000)).toEqual(
      pools,
    );
  });
});

describe("stragglers", () => {
  const o = resolveFleetPolicy({ pools: poolsOf(1, 1) });
  const done = [10_000, 12_000, 20_000]; // median 12 s → threshold max(24 s, 60 s) = 60 s

  it("copies a shard running past max(2 × median, 60 s) or interrupted twice, only when none is pending", () => {
    const running = [
      { shardId: "s1", startedAt: NOW - 61_000, interruptions: 0 },
      { shardId: "s2", startedAt: NOW - 59_000, interruptions: 0 },
      { shardId: "s3", startedAt: NOW - 1_000, interruptions: 2 },
    ];
    const found = findStragglers(
      operationState("op-1", 0, { running, completedShardMs: done }),
      NOW,
      o,
      new Set(),
    );
    expect(found.map((s) => [s.shardId, s.cause])).toEqual([
      ["s1", "slow"],
      ["s3", "interrupted"],
    ]);
    expect(
      findStragglers(
        operationState("op-1", 1, { running, completedShardMs: done }),
        NOW,
        o,
        new Set(),
      ),
    ).toEqual([]);
    // Without any completed shard only interruptions count.
    expect(
      findStragglers(operationState("op-1", 0, { running }), NOW, o, new Set()).map(
        (s) => s.shardId,
      ),
    ).toEqual(["s3"]);
  });

  it("copies once and asks for one on-demand instance per straggler, within the straggler cap", () => {
    const running = ["s1", "s2", "s3"].map((shardId) => ({
      shardId,
      startedAt: NOW - 5 * MIN,
      interruptions: 0,
    }));
    const ops = [operationState("op-1", 0, { running, completedShardMs: done })];
    const instances = [inst("i-1", { runningShards: 2 }), inst("i-2", { runningShards: 1 })];
    const options = { pools: poolsOf(1, 1), maxStragglerInstances: 2 };
    const first = planFleet(state({ operations: ops, instances }), NOW, options);
    expect(ofType(first.decisions, "copyToStraggler").map((d) => d.shardId)).toEqual([
      "s1",
      "s2",
      "s3",
    ]);
    expect(launchesOf(first.decisions)).toEqual([
      expect.objectContaining({ role: "straggler", market: "on-demand", count: 2 }),
    ]);
    const second = planFleet(
      state({ operations: ops, instances, memory: first.memory }),
      NOW + MIN,
      options,
    );
    expect(ofType(second.decisions, "copyToStraggler")).toEqual([]);
  });

  it("property: never while shards are pending, threshold respected, at most once per shard", () => {
    fc.assert(
      fc.property(
        operationsArb,
        fc.array(fc.integer({ min: 1000, max: 5 * MIN }), { minLength: 1, maxLength: 8 }),
        (operations, steps) => {
          let memory = emptyFleetMemory();
          let now = NOW;
          const copied = new Set<string>();
          for (const step of steps) {
            const out = planFleet(state({ operations, memory }), now, { pools: poolsOf(1, 1) });
            for (const d of ofType(out.decisions, "copyToStraggler")) {
              const o2 = operations.find((x) => x.id === d.operationId)!;
              expect(o2.pendingShards).toBe(0);
              const shard = o2.running.find((r) => r.shardId === d.shardId)!;
              const sorted = [...o2.completedShardMs].sort((a, b) => a - b);
              const mid = sorted.length >> 1;
              const med =
                sorted.length === 0
                  ? undefined
                  : sorted.length % 2
                    ? sorted[mid]!
                    : (sorted[mid - 1]! + sorted[mid]!) / 2;
              const slow = med !== undefined && now - shard.startedAt > Math.max(2 * med, 60_000);
              expect(slow || shard.interruptions >= 2).toBe(true);
              const key = `${d.operationId}/${d.shardId}`;
              expect(copied.has(key)).toBe(false);
              copied.add(key);
            }
            memory = out.memory;
            now += step;
          }
        },
      ),
    );
  });
});

describe("scale-in", () => {
  const o = { idleTimeoutMs: 3 * MIN, bootDeadlineMs: DEFAULT_BOOT_DEADLINE_MS };

  it("terminates idle instances after the timeout and idle ones of ended operations at once", () => {
    const instances = [
      inst("busy", { runningShards: 1, lastBusyAt: NOW - 30 * MIN }),
      inst("idle-long", { runningShards: 0, lastBusyAt: NOW - 4 * MIN }),
      inst("idle-short", { runningShards: 0, lastBusyAt: NOW - MIN }),
      inst("booting", { runningShards: 0, state: "pending", launchedAt: NOW - MIN }),
      inst("ended-idle", { operationId: "op-old", runningShards: 0, lastBusyAt: NOW - 1000 }),
      inst("ended-busy", { operationId: "op-old", runningShards: 1 }),
      inst("stopped", { runningShards: 0, state: "stopped" }),
      inst("gone", { runningShards: 0, state: "terminated", lastBusyAt: NOW - 60 * MIN }),
    ];
    const out = planScaleIn(instances, new Set(["op-1"]), NOW, o);
    expect(out.map((d) => [d.cause, d.ids])).toEqual([
      ["operation-ended", ["ended-idle"]],
      ["idle", ["idle-long"]],
      ["stopped", ["stopped"]],
    ]);
  });

  it("counts idle time from the worker's report, not from launch; never-reported ones go at the boot deadline", () => {
    const never = { runningShards: 0, lastBusyAt: undefined };
    const instances = [
      // Launched 10 min ago, its worker up only 1 min ago: a slow start is not idleness.
      inst("slow-start", { ...never, launchedAt: NOW - 10 * MIN, reportedAt: NOW - MIN }),
      inst("up-and-idle", { ...never, launchedAt: NOW - 10 * MIN, reportedAt: NOW - 4 * MIN }),
      // A shard ended after the report: idle since the shard.
      inst("worked", { runningShards: 0, reportedAt: NOW - 9 * MIN, lastBusyAt: NOW - 2 * MIN }),
      inst("booting", { ...never, launchedAt: NOW - 9 * MIN }),
      inst("never-up", { ...never, launchedAt: NOW - 11 * MIN }),
    ];
    const out = planScaleIn(instances, new Set(["op-1"]), NOW, { ...o, bootDeadlineMs: 10 * MIN });
    expect(out.map((d) => [d.cause, d.ids])).toEqual([
      ["idle", ["up-and-idle"]],
      ["unresponsive", ["never-up"]],
    ]);
    expect(out[1]!.reason).toBe("their worker did not report up within 600 s of launch");
  });

  it("property: an instance is never idle sooner than the idle timeout after its report or last shard", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 60 * MIN }),
        fc.option(fc.integer({ min: 0, max: 60 * MIN }), { nil: undefined }),
        fc.option(fc.integer({ min: 0, max: 60 * MIN }), { nil: undefined }),
        (launchedAgo, reportedAgo, busyAgo) => {
          const i = inst("i", {
            runningShards: 0,
            launchedAt: NOW - launchedAgo,
            ...(reportedAgo === undefined ? {} : { reportedAt: NOW - reportedAgo }),
            ...(busyAgo === undefined ? {} : { lastBusyAt: NOW - busyAgo }),
          });
          const out = planScaleIn([i], new Set(["op-1"]), NOW, { ...o, bootDeadlineMs: 10 * MIN });
          const cause = out[0]?.cause;
          const heard = [reportedAgo, busyAgo].filter((v) => v !== undefined);
          if (heard.length === 0) {
            expect(cause).toBe(launchedAgo >= 10 * MIN ? "unresponsive" : undefined);
          } else {
            expect(cause).toBe(Math.min(...heard) >= o.idleTimeoutMs ? "idle" : undefined);
          }
        },
      ),
    );
  });

  it("finds orphans: tagged, unknown, alive and past the grace period", () => {
    const seen = (instanceId: string, extra = {}) => ({
      instanceId,
      market: "spot" as const,
      instanceType: "c7g.large",
      state: "running" as const,
      launchedAt: NOW - 10 * MIN,
      tags: { [FLEET_TAGS.fleet]: "f" },
      ...extra,
    });
    const discovered = [
      seen("i-known"),
      seen("i-orphan"),
      seen("i-young", { launchedAt: NOW - 1000 }),
      seen("i-dead", { state: "terminated" }),
    ];
    expect(
      findOrphans(discovered, new Set(["i-known"]), NOW, MIN).map((i) => i.instanceId),
    ).toEqual(["i-orphan"]);
    const { decisions } = planFleet(
      state({
        instances: [inst("i-known")],
        discovered,
        operations: [
          operationState("op-1", 0, {
            running: [{ shardId: "s", startedAt: NOW, interruptions: 0 }],
          }),
        ],
      }),
      NOW,
      { pools: poolsOf(1, 1) },
    );
    expect(ofType(decisions, "terminate")).toEqual([
      expect.objectContaining({ cause: "orphan", ids: ["i-orphan"] }),
    ]);
  });

  it("property: never terminates a busy instance; without a provider view, only known ones", () => {
    fc.assert(
      fc.property(scenarioArb, (s) => {
        const { terminated } = plan(s);
        for (const i of s.instances) {
          if (i.runningShards > 0) expect(terminated.has(i.id)).toBe(false);
        }
        const known = new Set(s.instances.map((i) => i.id));
        expect([...terminated].every((id) => known.has(id))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});

describe("spot signals (EventBridge)", () => {
  const pools = poolsOf(1, 2);
  const warned = (i: FleetInstance, at = NOW - 5_000) =>
    withSpotSignal(i, { kind: "interruption-warning", at });
  const recommended = (i: FleetInstance, at = NOW - 5_000) =>
    withSpotSignal(i, { kind: "rebalance-recommendation", at });
  const fiveBusy = () => Array.from({ length: 5 }, (_, n) => inst(`i-${n}`));

  it("a warned instance is no capacity: its replacement is requested at once while shards remain", () => {
    // 10 shards at 2 per instance → 5 instances, all live; one is warned.
    const instances = fiveBusy();
    instances[2] = warned(instances[2]!);
    const { decisions } = planFleet(
      state({ operations: [operationState("op-1", 10)], instances }),
      NOW,
      {
        pools,
        maxInstances: 6,
      },
    );
    expect(launchesOf(decisions).map((d) => [d.market, d.role, d.count])).toEqual([
      ["spot", "worker", 1],
    ]);
    expect(launchesOf(decisions)[0]!.reason).toContain(
      "backlog 10 shards → 5 instance(s), 4 live (+1 warned of an interruption)",
    );
    // It still counts against the caps (it is live and billed until it goes): at the cap, none.
    const capped = planFleet(state({ operations: [operationState("op-1", 10)], instances }), NOW, {
      pools,
      maxInstances: 5,
    });
    expect(launchesOf(capped.decisions)).toEqual([]);
    // Running shards are backlog too: a warned instance working the last two shards is replaced.
    const last = planFleet(
      state({
        operations: [
          operationState("op-1", 0, {
            running: [
              { shardId: "s1", startedAt: NOW - MIN, interruptions: 0 },
              { shardId: "s2", startedAt: NOW - MIN, interruptions: 0 },
            ],
          }),
        ],
        instances: [warned(inst("i-1", { runningShards: 2 }))],
      }),
      NOW,
      { pools, maxInstances: 3 },
    );
    expect(launchesOf(last.decisions).map((d) => d.count)).toEqual([1]);
  });

  it("no replacement when the backlog is empty", () => {
    const instances = [warned(inst("i-1", { runningShards: 0, lastBusyAt: NOW - 1000 }))];
    const { decisions } = planFleet(
      state({ operations: [operationState("op-1", 0)], instances }),
      NOW,
      {
        pools,
      },
    );
    expect(launchesOf(decisions)).toEqual([]);
  });

  it("a rebalance recommendation alone launches nothing", () => {
    const instances = fiveBusy().map((i) => recommended(i));
    const { decisions } = planFleet(
      state({ operations: [operationState("op-1", 10)], instances }),
      NOW,
      {
        pools,
      },
    );
    expect(decisions).toEqual([]);
  });

  it("scale-in takes idle rebalance-recommended workers first, never below what the backlog needs", () => {
    const instances = [
      inst("busy", { runningShards: 1 }),
      recommended(inst("rec-late", { runningShards: 0, lastBusyAt: NOW - 1000 }), NOW - 1000),
      recommended(inst("rec-early", { runningShards: 0, lastBusyAt: NOW - 1000 }), NOW - 9000),
      recommended(inst("rec-busy", { runningShards: 2 })),
      inst("idle-short", { runningShards: 0, lastBusyAt: NOW - 1000 }),
    ];
    // Backlog 4 → 2 instances; 5 serve: a surplus of 3, but only the two idle recommended go.
    const few = planFleet(state({ operations: [operationState("op-1", 4)], instances }), NOW, {
      pools,
    });
    expect(ofType(few.decisions, "terminate")).toEqual([
      expect.objectContaining({ cause: "rebalance", ids: ["rec-early", "rec-late"] }),
    ]);
    expect(launchesOf(few.decisions)).toEqual([]);
    // Backlog 8 → 4 instances: a surplus of 1, the earliest recommendation goes.
    const more = planRebalanceScaleIn(instances, [operationState("op-1", 8)], {
      shardsPerInstance: 2,
      maxInstances: 20,
    });
    expect(more.map((d) => d.ids)).toEqual([["rec-early"]]);
    // Backlog 10 → 5: no surplus, nothing (the idle timeout still applies as before).
    expect(
      planRebalanceScaleIn(instances, [operationState("op-1", 10)], {
        shardsPerInstance: 2,
        maxInstances: 20,
      }),
    ).toEqual([]);
  });

  it("property: warned instances never count as capacity (with no cap binding, plans as if they were not there)", () => {
    fc.assert(
      fc.property(scenarioArb, (s) => {
        const open = {
          ...s,
          maxInstances: 10_000,
          maxHourlyUsd: undefined,
          maxStragglerInstances: 10_000,
        };
        const without = {
          ...open,
          instances: open.instances.filter((i) => i.interruptionWarnedAt === undefined),
        };
        const shape = (d: LaunchDecision) => [d.operationId, d.role, d.market, d.count, d.pools];
        expect(launchesOf(plan(open).result.decisions).map(shape)).toEqual(
          launchesOf(plan(without).result.decisions).map(shape),
        );
      }),
      { numRuns: 300 },
    );
  });

  it("property: applying a signal again changes nothing (same object, same plan)", () => {
    const signalArb = fc.record({
      index: fc.nat(11),
      kind: fc.constantFrom("interruption-warning" as const, "rebalance-recommendation" as const),
      at: fc.integer({ min: NOW - 10 * MIN, max: NOW }),
    });
    fc.assert(
      fc.property(scenarioArb, fc.array(signalArb, { maxLength: 8 }), (s, signals) => {
        const apply = (instances: FleetInstance[], list: typeof signals) =>
          list.reduce((acc, sig) => {
            const i = acc[sig.index % Math.max(1, acc.length)];
            if (!i) return acc;
            return acc.map((x) => (x === i ? withSpotSignal(x, sig) : x));
          }, instances);
        const once = apply(s.instances, signals);
        const twice = apply(once, signals);
        expect(twice).toEqual(once);
        // Once marked, any later signal of the same kind returns the very same object.
        for (const i of once) {
          for (const kind of ["interruption-warning", "rebalance-recommendation"] as const) {
            const m = withSpotSignal(i, { kind, at: NOW });
            expect(withSpotSignal(m, { kind, at: NOW - 1 })).toBe(m);
          }
        }
        expect(plan({ ...s, instances: twice }).result).toEqual(
          plan({ ...s, instances: once }).result,
        );
      }),
      { numRuns: 200 },
    );
  });
});

describe("options and carrying decisions out", () => {
  it("rejects bad options naming the option", () => {
    expect(() => resolveFleetPolicy({ pools: [], maxInstances: -1 })).toThrow(ConfigError);
    expect(() => resolveFleetPolicy({ pools: [], maxInstances: -1 })).toThrow(
      /fleet option maxInstances/,
    );
    expect(() => resolveFleetPolicy({ pools: [{ instanceType: "" }] })).toThrow(
      /pools\.0\.instanceType/,
    );
    expect(resolveFleetPolicy({ pools: [] })).toMatchObject({
      maxInstances: 20,
      coolingMs: 300_000,
    });
  });

  it("builds the port request with the fleet's tags and the caller's token", () => {
    const d: LaunchDecision = {
      type: "launch",
      operationId: "op-1",
      role: "worker",
      market: "spot",
      count: 6,
      pools: poolsOf(1, 2),
      reason: "r",
    };
    expect(toLaunchRequest(d, { fleet: "prod", clientToken: "tok-1" })).toEqual({
      market: "spot",
      count: 6,
      pools: poolsOf(1, 2),
      tags: {
        "shardfleet:fleet": "prod",
        "shardfleet:operation": "op-1",
        "shardfleet:role": "worker",
        "shardfleet:market": "spot",
      },
      clientToken: "tok-1",
    });
    expect(
      fleetInstancesFrom(d, [
        { instanceId: "i-1", market: "spot", instanceType: "c7g.large", launchedAt: NOW },
      ]),
    ).toEqual([
      {
        id: "i-1",
        operationId: "op-1",
        role: "worker",
        market: "spot",
        instanceType: "c7g.large",
        state: "pending",
        launchedAt: NOW,
        runningShards: 0,
      },
    ]);
  });
});
