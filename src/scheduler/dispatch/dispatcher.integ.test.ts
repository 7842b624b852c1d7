/**
 * The dispatcher against the local S3/SQS server: the backlog stays bounded, a small operation
 * queued behind a big one gets the next slots, a paused operation gets none, the cursor lives
 * in the dispatch record (a second scheduler never moves it back), and an operation queued
 * before dispatch records is not queued twice.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freshQueues, type LocalAws, startLocalAws } from "../../../test/support/local-aws.ts";
import { splitManifest } from "../../../test/support/manifests.ts";
import { systemClock } from "../../shared/clock.ts";
import { keys } from "../../shared/keys.ts";
import { silentLogger } from "../../shared/logger.ts";
import { dispatchRecordSchema } from "../../shared/schemas/dispatch.ts";
import type { Manifest } from "../../shared/schemas/operation.ts";
import { shardMessageSchema } from "../../shared/schemas/shard.ts";
import { DispatchRecords } from "./dispatch-record.ts";
import { Dispatcher } from "./dispatcher.ts";

let aws: LocalAws;

beforeAll(async () => {
  aws = await startLocalAws("dispatcher");
}, 60_000);

afterAll(async () => {
  await aws?.close();
});

async function setup(bound = { minQueued: 4, queuedPerRunning: 1 }) {
  const { work } = await freshQueues(aws);
  const records = new DispatchRecords({ store: aws.store, clock: systemClock });
  const dispatcher = new Dispatcher(
    { store: aws.store, queue: aws.queue, records, logger: silentLogger() },
    { workQueueUrl: work, bound },
  );
  return { work, records, dispatcher };
}

/** Every message on the queue now (taken for 30 s), as operation/shard pairs in receive order. */
async function drain(queueUrl: string): Promise<{ operationId: string; shardId: string }[]> {
  const out: { operationId: string; shardId: string }[] = [];
  for (;;) {
    const got = await aws.queue.receive(queueUrl, {
      max: 10,
      waitSeconds: 0,
      visibilityTimeout: 30,
    });
    if (got.length === 0) return out;
    for (const m of got) {
      const body = shardMessageSchema.parse(JSON.parse(m.body));
      out.push({ operationId: body.operationId, shardId: body.shardId });
    }
  }
}

/** A split operation with a dispatch record at 0, as a split since this release leaves it. */
async function operation(
  records: DispatchRecords,
  id: string,
  shards: number,
  created: number,
  status: Manifest["status"] = "running",
): Promise<Manifest> {
  const m = splitManifest(
    id,
    shards,
    new Date(Date.UTC(2026, 0, 1, 0, 0, created)).toISOString(),
    status,
  );
  await records.create(id);
  return m;
}

/** Marks a shard as received by a worker (an attempt record) and optionally committed. */
async function started(id: string, shardId: string, done = false): Promise<void> {
  await aws.store.putText(keys.attempt(id, shardId, "a1"), "{}", "application/json");
  if (done) await aws.store.putText(keys.done(id, shardId), "{}", "application/json");
}

describe("Dispatcher", () => {
  it("keeps the backlog bounded and serves a small operation queued behind a big one next", async () => {
    const { work, records, dispatcher } = await setup();
    const big = await operation(records, "fair-big", 40, 0);
    const first = await dispatcher.pass([big]);
    expect(first.sent).toEqual({ "fair-big": 4 });
    // Nothing received yet: the backlog is full, nothing more goes out.
    expect((await dispatcher.pass([big])).sent).toEqual({});

    // Workers take the four; a small operation arrives.
    for (const k of [0, 1, 2, 3]) await started(big.id, big.shards![k]!.id);
    const small = await operation(records, "fair-small", 3, 60);
    const pass = await dispatcher.pass([big, small]);
    expect(pass).toMatchObject({ queued: 0, running: 4, drained: 4, room: 4 });
    // The small one has nothing in flight: it gets every slot it can use first.
    expect(pass.sent).toEqual({ "fair-small": 3, "fair-big": 1 });
    const order = await drain(work);
    expect(order.slice(0, 4).map((m) => m.operationId)).toEqual(Array(4).fill("fair-big"));
    expect(order.slice(4, 7).map((m) => m.operationId)).toEqual(Array(3).fill("fair-small"));
    expect(order.slice(4).map((m) => m.shardId)).toEqual([
      ...small.shards!.map((s) => s.id),
      ...big.shards!.slice(4, 5).map((s) => s.id),
    ]);

    // The cursors are in the records.
    const rec = await aws.store.getJson(keys.dispatch(small.id), dispatchRecordSchema);
    expect(rec?.dispatched).toBe(3);
    expect(await records.dispatched(big.id)).toBe(5);
  });

  it("dispatches nothing for a paused or cancelling operation, and keeps its messages out of the bound", async () => {
    const { work, records, dispatcher } = await setup({ minQueued: 2, queuedPerRunning: 1 });
    const paused = await operation(records, "fair-paused", 10, 0, "paused");
    // Dispatched before the pause, still in SQS: released by workers, not counted.
    await records.advance(paused.id, 6);
    const cancelling = await operation(records, "fair-cancelling", 10, 1, "cancelling");
    const live = await operation(records, "fair-live", 10, 2);
    const pass = await dispatcher.pass([paused, cancelling, live]);
    expect(pass.sent).toEqual({ "fair-live": 2 });
    expect(await records.dispatched(paused.id)).toBe(6);
    expect(await records.dispatched(cancelling.id)).toBe(0);
    expect((await drain(work)).map((m) => m.operationId)).toEqual(["fair-live", "fair-live"]);
  });

  it("dispatches a splitting operation's shards as the split hands them over, bodies unchanged", async () => {
    const { work, records, dispatcher } = await setup({ minQueued: 10, queuedPerRunning: 1 });
    const m = splitManifest("fair-splitting", 3, new Date().toISOString(), "splitting");
    const splitting: Manifest = { ...m, shards: undefined, rows: undefined };
    let woken = 0;
    const queue = await dispatcher.splitterQueue(splitting.id, () => woken++);
    expect((await dispatcher.pass([splitting])).sent).toEqual({});
    const bodies = m.shards!.slice(0, 2).map((s) => ({
      v: 1 as const,
      operationId: m.id,
      shardId: s.id,
      start: s.start,
      end: s.end,
    }));
    await queue.sendShards("ignored", bodies);
    expect(woken).toBe(1);
    expect((await dispatcher.pass([splitting])).sent).toEqual({ "fair-splitting": 2 });
    const got = await aws.queue.receive(work, { max: 10, waitSeconds: 0, visibilityTimeout: 30 });
    expect(got.map((g) => JSON.parse(g.body))).toEqual(bodies);
    // Split done: the manifest's shards take over; only the third is left.
    expect((await dispatcher.pass([m])).sent).toEqual({ "fair-splitting": 1 });
    expect(await records.dispatched(m.id)).toBe(3);
  });

  it("never moves a cursor back when two schedulers write it (a lease takeover mid-dispatch)", async () => {
    const { records } = await setup();
    const other = new DispatchRecords({ store: aws.store, clock: systemClock });
    await records.create("fair-takeover");
    expect(await records.advance("fair-takeover", 5)).toBe(5);
    // The other scheduler read at 5 and got to 9; this one, with its stale ETag, asks for 7.
    expect(await other.advance("fair-takeover", 9)).toBe(9);
    expect(await records.advance("fair-takeover", 7)).toBe(9);
    expect(await records.advance("fair-takeover", 12)).toBe(12);
    expect(await other.advance("fair-takeover", 10)).toBe(12);
    // Creating again (a split run again) keeps the cursor.
    await other.create("fair-takeover");
    expect(
      await new DispatchRecords({ store: aws.store, clock: systemClock }).dispatched(
        "fair-takeover",
      ),
    ).toBe(12);
  });

  it("counts an operation queued before dispatch records as fully dispatched, sending nothing", async () => {
    const { work, records, dispatcher } = await setup();
    const legacy = splitManifest("fair-legacy", 6, new Date().toISOString());
    const pass = await dispatcher.pass([legacy]);
    expect(pass.sent).toEqual({});
    expect(pass.queued).toBe(6);
    expect(await records.dispatched(legacy.id)).toBe(6);
    expect(await drain(work)).toEqual([]);
  });

  it("re-drives a message through enqueueShards as it is", async () => {
    const { work, dispatcher } = await setup();
    const body = {
      v: 1 as const,
      operationId: "fair-redrive",
      shardId: "s00000",
      start: 0,
      end: 10,
    };
    await dispatcher.enqueueShards([body]);
    const got = await aws.queue.receive(work, { max: 10, waitSeconds: 0, visibilityTimeout: 30 });
    expect(got.map((g) => JSON.parse(g.body))).toEqual([body]);
  });
});
