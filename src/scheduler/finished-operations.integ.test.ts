/**
 * The scheduler's pass and the fleet manager share the process's one set of finished
 * operations: a finished manifest is read again (to notice a retry accepted by another process)
 * once per recheck, by whichever loop comes first, not once by each. Requests are counted by a
 * proxy in front of the real local S3 server; the EC2 fleet is an in-memory stand-in (no local
 * peer), and passes are driven by hand with a fake clock.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeClock } from "../../test/support/fake-clock.ts";
import { FakeCapacity, POOLS, PRICES } from "../../test/support/fleet.ts";
import { freshBucket } from "../../test/support/local-aws.ts";
import { splitManifest } from "../../test/support/manifests.ts";
import { type ProxiedAws, startProxiedAws } from "../../test/support/proxied-aws.ts";
import { seedManifest } from "../../test/support/seed-manifest.ts";
import { FINISHED_RECHECK_MS, FinishedOperations } from "../shared/finished-operations.ts";
import { keys } from "../shared/keys.ts";
import { silentLogger } from "../shared/logger.ts";
import { ObjectStore } from "../shared/object-store.ts";
import { FleetManager } from "./fleet/fleet-manager.ts";
import { Scheduler } from "./scheduler.ts";

let env: ProxiedAws;
beforeAll(async () => {
  env = await startProxiedAws("finished-reader");
});
afterAll(async () => {
  await env?.close();
});

async function scope() {
  const { aws, proxy, clients } = env;
  const { name, resources } = await freshBucket(aws, "finished");
  const store = new ObjectStore({ s3: clients.s3 }, { bucket: resources.bucket });
  const clock = new FakeClock({ sleeps: "instant", start: Date.parse("2025-06-01T12:00:00.000Z") });
  const finished = new FinishedOperations({ clock });
  const logger = silentLogger();
  const scheduler = new Scheduler(
    { store, queue: aws.queue, logger, clock, finished },
    { workQueueUrl: resources.queues.work },
  );
  const fleet = new FleetManager(
    { capacity: new FakeCapacity(clock), queue: aws.queue, store, logger, clock, finished },
    { fleet: name, policy: { pools: POOLS }, prices: PRICES },
  );
  /** GETs of the operation's manifest so far. */
  const manifestReads = (op: string) =>
    proxy.seen.filter((r) => r.method === "GET" && r.url.split("?")[0]!.endsWith(keys.manifest(op)))
      .length;
  return { store, clock, finished, scheduler, fleet, manifestReads };
}

describe("one reader of finished operations", () => {
  it("a finished manifest is read again once per recheck, not once per loop", async () => {
    const s = await scope();
    const iso = new Date(s.clock.now()).toISOString();
    await seedManifest(s, splitManifest("op-done", 1, iso, "succeeded"));
    await s.scheduler.tick();
    await s.fleet.tick();
    const settled = s.manifestReads("op-done");
    // Passes within the recheck period read nothing.
    await s.clock.advance(FINISHED_RECHECK_MS - 1_000);
    await s.scheduler.tick();
    await s.fleet.tick();
    expect(s.manifestReads("op-done")).toBe(settled);
    // Past it: one read, whichever loop comes first.
    await s.clock.advance(2_000);
    await s.fleet.tick();
    await s.scheduler.tick();
    await s.fleet.tick();
    expect(s.manifestReads("op-done")).toBe(settled + 1);
    await s.clock.advance(FINISHED_RECHECK_MS + 1_000);
    await s.scheduler.tick();
    await s.fleet.tick();
    expect(s.manifestReads("op-done")).toBe(settled + 2);
  });

  it("a retry accepted elsewhere is seen by both loops after the recheck", async () => {
    const s = await scope();
    const iso = new Date(s.clock.now()).toISOString();
    const done = await seedManifest(s, splitManifest("op-back", 2, iso, "failed"));
    await s.scheduler.tick();
    await s.fleet.tick();
    // Another process's API accepted a retry: the operation runs again.
    await seedManifest(s, { ...done, status: "running" });
    await s.clock.advance(FINISHED_RECHECK_MS + 1_000);
    await s.scheduler.tick();
    expect(s.finished.has("op-back")).toBe(false);
    const before = s.manifestReads("op-back");
    await s.fleet.tick();
    // The fleet manager reads it too (it sizes capacity for it again).
    expect(s.manifestReads("op-back")).toBeGreaterThan(before);
  });

  it("a deleted operation leaves the set, also when its recheck was claimed mid-delete", async () => {
    const s = await scope();
    const iso = new Date(s.clock.now()).toISOString();
    await seedManifest(s, splitManifest("op-gone", 1, iso, "succeeded"));
    // Another of its objects: the listing names it until the delete has cleared everything.
    await s.store.putText(keys.cost("op-gone"), "{}", "application/json");
    await s.scheduler.tick();
    await s.fleet.tick();
    expect(s.finished.has("op-gone")).toBe(true);
    // The delete removes the manifest first; a pass past the recheck claims it and reads nothing.
    await s.store.deletePrefix(keys.manifest("op-gone"));
    await s.clock.advance(FINISHED_RECHECK_MS + 1_000);
    await s.scheduler.tick();
    expect(s.finished.has("op-gone")).toBe(true);
    for (const prefix of keys.operationPrefixes("op-gone")) await s.store.deletePrefix(prefix);
    // The next listing no longer names it: neither its entry nor the claim stays behind.
    await s.fleet.tick();
    expect(s.finished.size).toBe(0);
    expect(s.finished.has("op-gone")).toBe(false);
  });
});
