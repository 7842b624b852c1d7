/**
 * The fleet manager against the real local S3/SQS server and a fake capacity provider (an
 * in-memory stand-in for EC2 with switchable spot / on-demand capacity). Operations, attempts
 * and commit markers are written to S3 the way the scheduler and workers write them; passes are
 * driven by hand with a fake clock.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeClock } from "../../../test/support/fake-clock.ts";
import { FakeCapacity, noCapacity, POOLS, PRICES } from "../../../test/support/fleet.ts";
import { freshBucket, type LocalAws, startLocalAws } from "../../../test/support/local-aws.ts";
import { splitManifest } from "../../../test/support/manifests.ts";
import { seedManifest } from "../../../test/support/seed-manifest.ts";
import {
  CapacityConfigError,
  FLEET_TAGS,
  type LaunchRequest,
  type LaunchResult,
} from "../../shared/capacity.ts";
import { RetryableError } from "../../shared/errors.ts";
import { keys, shardIdFor } from "../../shared/keys.ts";
import { silentLogger } from "../../shared/logger.ts";
import { writeWorkerReport } from "../../shared/records/worker-report.ts";
import { budgetPeerSchema } from "../../shared/schemas/budget.ts";
import { type FleetRecord, fleetRecordSchema } from "../../shared/schemas/fleet.ts";
import type { Manifest } from "../../shared/schemas/operation.ts";
import { attemptSchema, shardDoneSchema } from "../../shared/schemas/shard.ts";
import { buildApp } from "../api/app.ts";
import { loadManifest, OperationService, shownStatus } from "../operations.ts";
import { FleetManager, type FleetManagerOptions } from "./fleet-manager.ts";
import type { FleetPolicyOptions } from "./policy.ts";

let env: LocalAws;
beforeAll(async () => {
  env = await startLocalAws("fleet-mgr");
});
afterAll(async () => {
  await env?.close();
});

/** A fresh bucket and queues, a fake provider and a manager (more managers share the provider). */
async function scope<C extends FakeCapacity = FakeCapacity>(
  policy: Partial<FleetPolicyOptions> = {},
  extra: Partial<FleetManagerOptions> = {},
  provider: (clock: FakeClock) => C = (clock) => new FakeCapacity(clock) as C,
) {
  const { name, resources, store } = await freshBucket(env, "fleet");
  const clock = new FakeClock({ sleeps: "instant", start: Date.parse("2025-06-01T12:00:00.000Z") });
  const capacity = provider(clock);
  const options: FleetManagerOptions = {
    fleet: name,
    policy: { pools: POOLS, maxInstances: 10, ...policy },
    prices: PRICES,
    stragglerQueueUrl: resources.queues.straggler,
    launchRetryDelayMs: 1,
    ...extra,
  };
  const manager = () =>
    new FleetManager({ capacity, queue: env.queue, store, logger: silentLogger(), clock }, options);
  const iso = (ms = clock.now()) => new Date(ms).toISOString();

  /** An operation split into `shards` shards of 10 rows, as the scheduler leaves it. */
  const operation = async (id: string, shards: number, status: Manifest["status"] = "running") => {
    return seedManifest({ store, clock }, splitManifest(id, shards, iso(), status));
  };
  const setStatus = async (id: string, status: Manifest["status"]) => {
    const m = (await loadManifest(store, id))!;
    await seedManifest({ store, clock }, { ...m, status });
  };
  /** An attempt record as a worker writes it. */
  const attempt = async (
    op: string,
    shard: number,
    a: { id: string; instanceId: string; startedAt: number; endedAt?: number; cause?: string },
  ) =>
    store.putJson(keys.attempt(op, shardIdFor(shard), a.id), attemptSchema, {
      v: 1,
      attemptId: a.id,
      operationId: op,
      shardId: shardIdFor(shard),
      instanceId: a.instanceId,
      market: "spot",
      startedAt: iso(a.startedAt),
      ...(a.endedAt !== undefined ? { endedAt: iso(a.endedAt) } : {}),
      rowsDone: 0,
      cause: (a.cause ?? (a.endedAt === undefined ? "running" : "completed")) as "running",
    });
  const commit = async (op: string, shard: number, at: number) =>
    store.putJson(keys.done(op, shardIdFor(shard)), shardDoneSchema, {
      v: 1,
      operationId: op,
      shardId: shardIdFor(shard),
      attemptId: `a${shard}`,
      instanceId: "x",
      rows: 10,
      errorRows: 0,
      columns: [],
      chunks: [],
      committedAt: iso(at),
    });
  /** The worker of `instanceId` reports up, as a worker does after its first receive. */
  const report = (instanceId: string) =>
    writeWorkerReport({ store, clock }, { instanceId, market: "spot" });
  const record = async (op: string): Promise<FleetRecord> =>
    (await store.getJson(keys.fleet(op), fleetRecordSchema))!;
  const kinds = async (op: string) => (await record(op)).events.map((e) => e.kind);
  /** The manifest with the status the view shows (a wait comes from the fleet record). */
  const manifest = async (op: string) => {
    const m = (await loadManifest(store, op))!;
    const fleet = await store.getJson(keys.fleet(op), fleetRecordSchema);
    return { ...m, ...shownStatus(m, fleet?.waiting) };
  };
  /** What the straggler queue holds now (received, not deleted). */
  const stragglerCopies = () =>
    env.queue.receive(resources.queues.straggler, {
      max: 10,
      waitSeconds: 0,
      visibilityTimeout: 30,
    });
  return {
    store,
    clock,
    capacity,
    manager,
    operation,
    setStatus,
    attempt,
    commit,
    report,
    record,
    kinds,
    manifest,
    stragglerCopies,
  };
}

/**
 * The fake provider, recording how many launch calls overlap: each call returns after a few
 * turns of the event loop, so calls started together are in flight together. Calls listed in
 * `failCalls` (by start order) return at once with a capacity error in every pool they name.
 */
class OverlapCapacity extends FakeCapacity {
  readonly started: LaunchRequest[] = [];
  readonly failCalls = new Set<number>();
  inFlight = 0;
  maxInFlight = 0;

  override async launch(request: LaunchRequest, signal?: AbortSignal): Promise<LaunchResult> {
    const n = this.started.push(request) - 1;
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.failCalls.has(n)) return noCapacity(request);
      for (let k = 0; k < 3; k++) await new Promise((r) => setImmediate(r));
      // As the SDK: a call whose signal was aborted meanwhile rejects.
      signal?.throwIfAborted();
      return await super.launch(request);
    } finally {
      this.inFlight--;
    }
  }
}

describe("fleet manager (fake capacity provider, real local S3/SQS)", () => {
  it("falls back to on-demand when spot has no capacity, and records and shows it", async () => {
    const s = await scope();
    await s.operation("op-a", 8);
    s.capacity.available.spot = false;
    const fm = s.manager();
    await fm.tick();

    // 8 shards / 2 per instance = 4; spot rounds up to a batch of 5, then the re-plan after
    // both pools' capacity errors asks on-demand for exactly what is needed.
    expect(s.capacity.launches.map((r) => [r.market, r.count])).toEqual([
      ["spot", 5],
      ["on-demand", 4],
    ]);
    expect(s.capacity.launches[0]!.clientToken).not.toBe(s.capacity.launches[1]!.clientToken);
    expect(s.capacity.launches[1]!.tags).toMatchObject({
      [FLEET_TAGS.fleet]: "fleet-1",
      [FLEET_TAGS.operation]: "op-a",
      [FLEET_TAGS.role]: "worker",
      [FLEET_TAGS.market]: "on-demand",
    });
    expect(await s.kinds("op-a")).toEqual([
      "launch-requested",
      "launch-failed",
      "capacity-error",
      "capacity-error",
      "fallback-on-demand",
      "launch-requested",
      "launch-fulfilled",
    ]);
    const rec = await s.record("op-a");
    expect(rec.events[2]!.message).toMatch(
      /^InsufficientInstanceCapacity in c7g\.large in \(az-1\) \(spot, capacity\)/,
    );
    expect(rec.instances.map((i) => [i.market, i.role, i.state])).toEqual(
      Array(4).fill(["on-demand", "worker", "pending"]),
    );

    // Enough is live now: the next pass launches nothing.
    await fm.tick();
    expect(s.capacity.launches).toHaveLength(2);

    // The API shows the instances and events (the response schema lets them through).
    const operations = new OperationService({
      store: s.store,
      logger: silentLogger(),
      clock: s.clock,
    });
    const app = buildApp({ operations, logger: silentLogger(), maxUploadBytes: 1 << 20 });
    const view = (await app.inject("/operations/op-a")).json();
    expect(view.instances).toHaveLength(4);
    expect(view.instances[0]).toMatchObject({
      market: "on-demand",
      type: "c7g.large",
      role: "worker",
      state: expect.any(String),
      since: expect.any(String),
    });
    expect(view.events.map((e: { kind: string }) => e.kind)).toContain("fallback-on-demand");
    const list = (await app.inject("/operations")).json();
    expect(list.operations[0].instances).toBeUndefined();
    await app.close();
  });

  it("says waiting-for-capacity with the reason, keeps saying it, then fails at the deadline", async () => {
    const s = await scope({ capacityDeadlineMs: 60_000 });
    await s.operation("op-b", 4);
    s.capacity.available.spot = false;
    s.capacity.available["on-demand"] = false;
    const fm = s.manager();
    await fm.tick();

    let m = await s.manifest("op-b");
    expect(m.status).toBe("waiting-for-capacity");
    expect(m.waiting?.reason).toMatch(
      /no spot capacity \(c7g\.large in \(az-1\): InsufficientInstanceCapacity .*no on-demand capacity/,
    );
    expect(await s.kinds("op-b")).toContain("waiting-for-capacity");

    // The scheduler's split writes `running` from its own copy: the next pass restores the wait.
    await s.setStatus("op-b", "running");
    await s.clock.advance(10_000);
    await fm.tick();
    expect((await s.manifest("op-b")).status).toBe("waiting-for-capacity");

    await s.clock.advance(51_000);
    await fm.tick();
    m = await s.manifest("op-b");
    expect(m.status).toBe("failed");
    expect(m.error?.code).toBe("CAPACITY_DEADLINE");
    expect(m.error?.message).toMatch(
      /^no capacity found within 60 s .*InsufficientInstanceCapacity/,
    );
    expect(m.waiting).toBeUndefined();
    expect((await s.kinds("op-b")).at(-1)).toBe("operation-failed");
    // Both markets were tried once and cooled: nothing else was asked for.
    expect(s.capacity.launches.map((r) => r.market)).toEqual(["spot", "on-demand"]);
  });

  it("copies a straggler to the straggler queue and launches on-demand capacity for it", async () => {
    const s = await scope();
    await s.operation("op-c", 4);
    const fm = s.manager();
    const t0 = s.clock.now();
    await fm.tick();
    expect(s.capacity.launches.map((r) => [r.market, r.count])).toEqual([["spot", 5]]);

    // Three shards took 10 s each; the fourth has run for 70 s (threshold: max(2 × 10 s, 60 s)).
    for (const k of [0, 1, 2]) {
      await s.attempt("op-c", k, {
        id: `a${k}`,
        instanceId: "i-1",
        startedAt: t0,
        endedAt: t0 + 10_000,
      });
      await s.commit("op-c", k, t0 + 10_000);
    }
    await s.attempt("op-c", 3, { id: "a3", instanceId: "i-2", startedAt: t0 });
    await s.clock.advance(50_000);
    await fm.tick();
    expect(s.capacity.launches).toHaveLength(1); // 50 s: not yet a straggler

    await s.clock.advance(20_000);
    await fm.tick();
    const copies = await s.stragglerCopies();
    expect(copies.map((c) => JSON.parse(c.body))).toEqual([
      { v: 1, operationId: "op-c", shardId: shardIdFor(3), start: 30, end: 40 },
    ]);
    const straggler = s.capacity.launches[1]!;
    expect([straggler.market, straggler.count, straggler.tags[FLEET_TAGS.role]]).toEqual([
      "on-demand",
      1,
      "straggler",
    ]);
    const rec = await s.record("op-c");
    expect(rec.events.find((e) => e.kind === "straggler-copied")?.message).toBe(
      "shard s000003 copied to the straggler queue: running 70 s, over 60 s (2× the median shard time)",
    );

    // Once copied, never again.
    await s.clock.advance(5_000);
    await fm.tick();
    const again = await s.stragglerCopies();
    expect(again).toEqual([]);
    expect(s.capacity.launches).toHaveLength(2);
  });

  it("sweeps orphans on start, adopts recorded instances after a restart, and scales in when the operation ends", async () => {
    const s = await scope();
    await s.operation("op-d", 2);
    // Left over from a crashed scheduler: tagged with this fleet, unknown, two minutes old.
    s.capacity.instances.set("i-orphan", {
      instanceId: "i-orphan",
      market: "spot",
      instanceType: "c7g.large",
      state: "running",
      launchedAt: s.clock.now() - 120_000,
      tags: { [FLEET_TAGS.fleet]: "fleet-4", [FLEET_TAGS.operation]: "op-gone" },
    });
    // Another fleet's instance is none of our business.
    s.capacity.instances.set("i-other", {
      instanceId: "i-other",
      market: "spot",
      instanceType: "c7g.large",
      state: "running",
      launchedAt: s.clock.now() - 120_000,
      tags: { [FLEET_TAGS.fleet]: "someone-else" },
    });
    await s.manager().tick();
    expect(s.capacity.terminations).toEqual([["i-orphan"]]);
    expect(s.capacity.live().map((i) => i.instanceId)).toEqual([
      "i-other",
      "i-1",
      "i-2",
      "i-3",
      "i-4",
      "i-5",
    ]);

    // A restarted scheduler: a new manager adopts op-d's instances instead of sweeping them.
    await s.clock.advance(120_000);
    const restarted = s.manager();
    await restarted.tick();
    expect(s.capacity.terminations).toHaveLength(1);
    expect(s.capacity.launches).toHaveLength(1);

    await s.setStatus("op-d", "succeeded");
    await restarted.tick();
    expect(s.capacity.terminations[1]!.sort()).toEqual(["i-1", "i-2", "i-3", "i-4", "i-5"]);
    await restarted.tick();
    const rec = await s.record("op-d");
    expect(rec.instances.map((i) => i.state)).toEqual(Array(5).fill("terminated"));
    expect(rec.instances[0]!.endReason).toMatch(/^terminated \(operation-ended\)/);
    expect(rec.events.find((e) => e.kind === "instance-terminated")?.message).toMatch(
      /^terminated i-\d, .* \(operation-ended\): their operation ended/,
    );
  });

  it("adopts the instances of an operation that was merging when the scheduler died, ends them and records it", async () => {
    const s = await scope();
    await s.operation("op-m", 2);
    await s.manager().tick();
    expect(s.capacity.live()).toHaveLength(5);
    // The scheduler dies while the operation merges; a new one starts.
    await s.setStatus("op-m", "merging");
    await s.clock.advance(120_000);
    const restarted = s.manager();
    await restarted.tick();
    await restarted.tick();
    expect(s.capacity.live()).toEqual([]);
    const rec = await s.record("op-m");
    expect(rec.instances.map((i) => i.state)).toEqual(Array(5).fill("terminated"));
    expect(rec.instances[0]!.endReason).toMatch(/\(operation-ended\)/);
    expect(rec.events.some((e) => e.kind === "instance-terminated")).toBe(true);
  });

  it("terminates instances idle past the idle timeout, never busy ones", async () => {
    const s = await scope({ idleTimeoutMs: 30_000, maxInstances: 2 });
    await s.operation("op-i", 4);
    const fm = s.manager();
    await fm.tick();
    const t0 = s.clock.now();
    expect(s.capacity.live()).toHaveLength(2);
    // Both workers are up at once (idle time counts from their reports).
    await s.report("i-1");
    await s.report("i-2");
    await fm.tick();
    await s.attempt("op-i", 0, { id: "a0", instanceId: "i-1", startedAt: t0 });
    await s.clock.advance(31_000);
    await fm.tick();
    expect(s.capacity.terminations).toEqual([["i-2"]]);
  });

  it("does not count a booting instance as idle: one that never reports goes at the boot deadline", async () => {
    const s = await scope({ idleTimeoutMs: 30_000, maxInstances: 1, bootDeadlineMs: 90_000 });
    await s.operation("op-j", 2);
    const fm = s.manager();
    await fm.tick();
    await s.clock.advance(89_000);
    await fm.tick();
    expect(s.capacity.terminations).toEqual([]);
    await s.clock.advance(2_000);
    await fm.tick();
    expect(s.capacity.terminations).toEqual([["i-1"]]);
    expect((await s.record("op-j")).instances[0]!.endReason).toMatch(
      /^terminated \(unresponsive\): their worker did not report up within 90 s/,
    );
  });

  it("counts idle time from the worker's first report, not from launch (a slow start is not idle)", async () => {
    const s = await scope({ idleTimeoutMs: 30_000, maxInstances: 1 });
    await s.operation("op-r", 2);
    const fm = s.manager();
    await fm.tick();
    expect(s.capacity.live()).toHaveLength(1);
    // A loaded machine: the worker takes 50 s to start, longer than the idle timeout.
    await s.clock.advance(50_000);
    await fm.tick();
    expect(s.capacity.terminations).toEqual([]);
    await s.report("i-1");
    await fm.tick();
    await s.clock.advance(29_000);
    await fm.tick();
    expect(s.capacity.terminations).toEqual([]);
    await s.clock.advance(2_000);
    await fm.tick();
    expect(s.capacity.terminations).toEqual([["i-1"]]);
    expect((await s.record("op-r")).instances[0]!.endReason).toMatch(/^terminated \(idle\)/);
  });

  it("reports a reclaimed instance as lost and plans its replacement", async () => {
    const s = await scope({ maxInstances: 5 });
    await s.operation("op-e", 10);
    const fm = s.manager();
    await fm.tick();
    expect(s.capacity.launches.map((r) => r.count)).toEqual([5]);
    s.capacity.reclaim("i-3");
    await fm.tick();
    expect(s.capacity.launches.map((r) => [r.market, r.count])).toEqual([
      ["spot", 5],
      ["spot", 1],
    ]);
    const rec = await s.record("op-e");
    expect(rec.events.find((e) => e.kind === "instance-lost")?.message).toMatch(
      /^i-3 \(spot, worker\) ended without being asked/,
    );
    expect(rec.instances.find((i) => i.id === "i-3")?.state).toBe("terminated");
  });

  it("retries a launch that failed with a retryable error with the same client token", async () => {
    const s = await scope();
    await s.operation("op-f", 2);
    s.capacity.throwNext.push(new RetryableError("RequestLimitExceeded"));
    await s.manager().tick();
    expect(s.capacity.launches).toHaveLength(2);
    expect(s.capacity.launches[1]!.clientToken).toBe(s.capacity.launches[0]!.clientToken);
    expect(s.capacity.live()).toHaveLength(5);
  });

  it("fails the operation loudly on a configuration error", async () => {
    const s = await scope();
    await s.operation("op-g", 2);
    s.capacity.throwNext.push(
      new CapacityConfigError(
        "config",
        "InvalidLaunchTemplateId.NotFound",
        "InvalidLaunchTemplateId.NotFound: the launch template lt-123 does not exist",
      ),
    );
    await s.manager().tick();
    expect(s.capacity.launches).toHaveLength(1); // not retried
    const m = await s.manifest("op-g");
    expect(m.status).toBe("failed");
    expect(m.error?.code).toBe("CAPACITY_CONFIG");
    expect(m.error?.message).toMatch(/retrying cannot help.*lt-123 does not exist/);
    expect(await s.kinds("op-g")).toEqual([
      "launch-requested",
      "launch-failed",
      "operation-failed",
    ]);
  });

  it("holds a tenant's instance cap across its operations (tenants read from the manifests)", async () => {
    const s = await scope({ tenantCaps: { acme: { maxInstances: 3 } } });
    for (const [id, tenant] of [
      ["op-t1", "acme"],
      ["op-t2", "acme"],
      ["op-t3", "globex"],
    ] as const) {
      const m = splitManifest(id, 10, new Date(s.clock.now()).toISOString());
      await seedManifest({ store: s.store, clock: s.clock }, { ...m, tenant });
    }
    await s.manager().tick();
    const launched = (ops: string[]) =>
      s.capacity.launches
        .filter((r) => ops.includes(r.tags[FLEET_TAGS.operation] ?? ""))
        .reduce((n, r) => n + r.count, 0);
    // 10 shards / 2 per instance = 5 each: acme's two operations share 3, globex gets its 5.
    expect(launched(["op-t1", "op-t2"])).toBe(3);
    expect(launched(["op-t3"])).toBe(5);
  });
  it("sizes a budgeted operation to what its source accepts, from the workers' records, and says so once (mocked EC2: fake capacity provider)", async () => {
    const s = await scope({ maxInstances: 30 });
    const m = splitManifest("op-src", 40, new Date(s.clock.now()).toISOString());
    await seedManifest(
      { store: s.store, clock: s.clock },
      {
        ...m,
        spec: {
          ...m.spec,
          task: {
            name: "http-enrich",
            options: {
              url: "https://registry.example/{n}",
              results: { v: "v" },
              rateLimit: { requestsPerSecond: 400 },
            },
          },
        },
      },
    );
    const manager = s.manager();
    const launched = () => s.capacity.launches.reduce((n, r) => n + r.count, 0);
    const limited = async () =>
      (await s.record("op-src")).events.filter((e) => e.kind === "source-limited");

    // 40 shards call for 20 instances; before any worker measured the source, one batch.
    await manager.tick();
    expect(launched()).toBe(6);
    expect((await limited()).map((e) => e.message)).toEqual([
      expect.stringMatching(/no worker has measured the source yet, so at most one batch \(6\)/),
    ]);

    // Two workers measured it: 10 requests in flight answered in 200 ms, so one instance sends
    // about 50 a second and the budget of 400 keeps 8 busy.
    for (const id of ["i-1", "i-2"]) {
      await s.store.putJson(keys.budgetPeer("op-src", id, "m1"), budgetPeerSchema, {
        v: 1,
        instanceId: id,
        renewedAt: new Date().toISOString(),
        peers: 2,
        origins: [
          {
            origin: "https://registry.example",
            concurrency: 10,
            inFlight: 10,
            requestsPerSecond: 50,
            latencyMs: 200,
            requests: 500,
            throttled: 0,
            failed: 0,
            budget: 400,
            budgetShare: 200,
          },
        ],
      });
    }
    await manager.tick();
    expect(launched()).toBe(8);
    await manager.tick();
    expect(launched()).toBe(8);
    const events = await limited();
    expect(events).toHaveLength(2);
    expect(events[1]?.message).toMatch(
      /request budget 400\/s keeps 8 instance\(s\) busy: one sends up to 50\/s to https:\/\/registry\.example/,
    );
  });

  it("carries a plan's launches out concurrently, up to the configured bound and never beyond (fake capacity provider)", async () => {
    for (const bound of [1, 3]) {
      const s = await scope({ maxInstances: 30 }, { launchConcurrency: bound }, (clock) => {
        return new OverlapCapacity(clock);
      });
      await s.operation("op-l", 60);
      await s.manager().tick();
      // 60 shards / 2 per instance = 30, in spot batches of five or six: several calls.
      expect(s.capacity.started.length).toBeGreaterThan(bound);
      expect(s.capacity.maxInFlight).toBe(bound);
      expect(s.capacity.started.every((r) => r.market === "spot")).toBe(true);
      expect(s.capacity.live()).toHaveLength(30);
      expect((await s.record("op-l")).instances).toHaveLength(30);
    }
  });

  it("once a concurrent launch reports a capacity error, starts no more, records those in flight and re-plans the rest (fake capacity provider)", async () => {
    const s = await scope({ maxInstances: 30 }, { launchConcurrency: 3 }, (clock) => {
      return new OverlapCapacity(clock);
    });
    s.capacity.failCalls.add(1);
    await s.operation("op-m", 60);
    await s.manager().tick();
    const started = s.capacity.started;
    // Calls 0 and 2 were in flight when call 1 failed: they ran to their end. Nothing else of
    // that plan started; the re-plan saw both spot pools cooling and fell back to on-demand.
    expect(started.slice(0, 3).map((r) => r.market)).toEqual(["spot", "spot", "spot"]);
    expect(started.length).toBeGreaterThan(3);
    expect(started.slice(3).every((r) => r.market === "on-demand")).toBe(true);
    expect(s.capacity.maxInFlight).toBeLessThanOrEqual(3);
    const spotLaunched = started[0]!.count + started[2]!.count;
    const live = s.capacity.live();
    expect(live.filter((i) => i.market === "spot")).toHaveLength(spotLaunched);
    // Nothing doubled: the re-plan counted the in-flight launches' instances.
    expect(live).toHaveLength(30);
    const rec = await s.record("op-m");
    expect(rec.instances).toHaveLength(30);
    const kinds = rec.events.map((e) => e.kind);
    expect(kinds.filter((k) => k === "capacity-error")).toHaveLength(started[1]!.pools.length);
    expect(kinds).toContain("fallback-on-demand");
    expect(kinds.indexOf("fallback-on-demand")).toBeGreaterThan(kinds.indexOf("capacity-error"));
  });
  it("when the pass is aborted with launches in flight, starts no more, waits for them, then rejects (fake capacity provider)", async () => {
    const s = await scope({ maxInstances: 30 }, { launchConcurrency: 3 }, (clock) => {
      return new OverlapCapacity(clock);
    });
    await s.operation("op-n", 60);
    const abort = new AbortController();
    const pass = s.manager().tick(abort.signal);
    // Abort once the first calls are in flight (the fake answers after a few event-loop turns).
    const stopped = (async () => {
      while (s.capacity.started.length === 0) await new Promise((r) => setImmediate(r));
      abort.abort(new Error("stopping"));
    })();
    await expect(pass).rejects.toThrow("stopping");
    await stopped;
    expect(s.capacity.started).toHaveLength(3);
    expect(s.capacity.inFlight).toBe(0);
    expect(s.capacity.live()).toHaveLength(0);
  });

  it("records a wait in its fleet record, never the manifest; a restarted manager counts the deadline from it", async () => {
    const s = await scope({ capacityDeadlineMs: 60_000 });
    await s.operation("op-w", 4);
    s.capacity.available.spot = false;
    s.capacity.available["on-demand"] = false;
    const began = s.clock.now();
    await s.manager().tick();
    // The lifecycle state is untouched: waiting is the fleet manager's condition, in its record.
    expect((await loadManifest(s.store, "op-w"))?.status).toBe("running");
    expect((await s.record("op-w")).waiting).toEqual({
      since: new Date(began).toISOString(),
      reason: expect.stringMatching(/no spot capacity/),
    });
    expect((await s.manifest("op-w")).status).toBe("waiting-for-capacity");

    // A new manager (a restarted scheduler) starts with an empty memory: the recorded wait
    // carries the deadline over, so its first pass past it fails the operation.
    await s.clock.advance(61_000);
    await s.manager().tick();
    const failed = await loadManifest(s.store, "op-w");
    expect(failed?.status).toBe("failed");
    expect(failed?.error?.code).toBe("CAPACITY_DEADLINE");
    expect(failed?.error?.message).toContain(`waiting since ${new Date(began).toISOString()}`);
    expect((await s.record("op-w")).waiting).toBeUndefined();
  });

  it("asks the state machine again when failing an operation could not be recorded (S3 fault injected)", async () => {
    const s = await scope({ capacityDeadlineMs: 60_000 });
    await s.operation("op-r", 4);
    s.capacity.available.spot = false;
    s.capacity.available["on-demand"] = false;
    const fm = s.manager();
    await fm.tick();
    // The policy decides the fail once; the first conditional write of it meets a 503.
    const original = s.store.putJsonIfMatch.bind(s.store);
    let faults = 0;
    s.store.putJsonIfMatch = (async (...args: Parameters<typeof original>) => {
      if (faults++ === 0) {
        throw Object.assign(new Error("Service Unavailable"), {
          name: "ServiceUnavailable",
          $metadata: { httpStatusCode: 503 },
        });
      }
      return original(...args);
    }) as typeof s.store.putJsonIfMatch;
    await s.clock.advance(61_000);
    await fm.tick();
    expect(faults).toBe(2);
    const m = await loadManifest(s.store, "op-r");
    expect(m?.status).toBe("failed");
    expect(m?.error?.code).toBe("CAPACITY_DEADLINE");
    expect((await s.kinds("op-r")).filter((k) => k === "operation-failed")).toHaveLength(1);
  });
});
