/**
 * ShardActivityReader against the real local S3 server: shard records are read from the durable
 * prefix, and slices (under scratch) are only listed to count shards while the split runs.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type LocalAws, startLocalAws } from "../../../test/support/local-aws.ts";
import { testManifest } from "../../../test/support/manifests.ts";
import { keys, shardIdFor } from "../../shared/keys.ts";
import { attemptSchema, shardDoneSchema } from "../../shared/schemas/shard.ts";
import { ShardActivityReader } from "./observe.ts";

let aws: LocalAws;
beforeAll(async () => {
  aws = await startLocalAws("observe");
});
afterAll(async () => {
  await aws?.close();
});

const T0 = Date.parse("2025-06-01T12:00:00.000Z");
const iso = (ms: number) => new Date(ms).toISOString();

/** Shard 0 committed, shard 1 running on i-1; slices for shards 0-2; a stray chunk for shard 3. */
async function seed(op: string) {
  for (let k = 0; k < 3; k++) await aws.store.putText(keys.shardInput(op, shardIdFor(k)), "{}\n");
  await aws.store.putText(keys.chunk(op, shardIdFor(3), 0, 1), "{}\n");
  await aws.store.putJson(keys.done(op, shardIdFor(0)), shardDoneSchema, {
    v: 1,
    operationId: op,
    shardId: shardIdFor(0),
    attemptId: "a0",
    instanceId: "i-0",
    rows: 10,
    errorRows: 0,
    columns: [],
    chunks: [],
    committedAt: iso(T0 + 5000),
  });
  await aws.store.putJson(keys.attempt(op, shardIdFor(1), "a1"), attemptSchema, {
    v: 1,
    attemptId: "a1",
    operationId: op,
    shardId: shardIdFor(1),
    instanceId: "i-1",
    market: "spot",
    startedAt: iso(T0),
    rowsDone: 0,
    cause: "running",
  });
}

describe("ShardActivityReader", () => {
  it("counts the slices written so far as the shards of an operation still splitting", async () => {
    const op = "op-observe-splitting";
    await seed(op);
    const reader = new ShardActivityReader({ store: aws.store });
    const { state, activity } = await reader.read(testManifest(op), () => false);
    // Shards 0-2 have slices: one done, one running, one pending; shard 3 has no slice.
    expect(state.pendingShards).toBe(1);
    expect(state.running).toEqual([{ shardId: shardIdFor(1), startedAt: T0, interruptions: 0 }]);
    expect(activity.get("i-1")).toEqual({ running: 1 });
  });

  it("lists only the durable records once the manifest names the shards", async () => {
    const op = "op-observe-split";
    await seed(op);
    const list = vi.spyOn(aws.store, "list");
    try {
      const reader = new ShardActivityReader({ store: aws.store });
      const shards = Array.from({ length: 4 }, (_, k) => ({
        id: shardIdFor(k),
        start: k * 10,
        end: (k + 1) * 10,
      }));
      const { state } = await reader.read(testManifest(op, { shards }), () => false);
      expect(state.pendingShards).toBe(2);
      expect(state.running.map((r) => r.shardId)).toEqual([shardIdFor(1)]);
      expect(list.mock.calls.map(([prefix]) => prefix)).toEqual([keys.shardsPrefix(op)]);
    } finally {
      list.mockRestore();
    }
  });

  it("counts a lost attempt as an interruption only when its instance is gone (a crash loop is no reclaim)", async () => {
    const op = "op-observe-crashes";
    await seed(op);
    const lost = (attemptId: string, instanceId: string) =>
      aws.store.putJson(keys.attempt(op, shardIdFor(1), attemptId), attemptSchema, {
        v: 1,
        attemptId,
        operationId: op,
        shardId: shardIdFor(1),
        instanceId,
        market: "spot",
        startedAt: iso(T0 - 2000),
        endedAt: iso(T0 - 1000),
        rowsDone: 0,
        cause: "lost",
        error: "relabelled by i-1: no heartbeat: its message was delivered again",
      });
    // Two crashes of the worker process on i-1 (alive), one on i-9 (reclaimed, gone).
    await lost("c1", "i-1");
    await lost("c2", "i-1");
    await lost("c3", "i-9");
    const shards = Array.from({ length: 3 }, (_, k) => ({
      id: shardIdFor(k),
      start: k * 10,
      end: (k + 1) * 10,
    }));
    const reader = new ShardActivityReader({ store: aws.store });
    const { state } = await reader.read(testManifest(op, { shards }), (id) => id === "i-9");
    expect(state.running).toEqual([
      { shardId: shardIdFor(1), startedAt: T0 - 2000, interruptions: 1 },
    ]);
  });
});
