import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  nextEmptySince,
  type QueueObservation,
  type ShardSigns,
  shardsToRedrive,
  worthLooking,
} from "./sweep-policy.ts";

const T0 = 1_000_000;
const SILENCE = 90_000;
const op = (shards: ShardSigns[], createdAtMs = T0, splitDoneMs = T0 + 1_000) => ({
  createdAtMs,
  splitDoneMs,
  shards,
});
const busyQueue: QueueObservation = { createdAtMs: T0 - 60_000, emptySinceMs: undefined };

describe("sweep policy", () => {
  it("never re-drives while the queue holds messages and was not recreated, however silent the shards", () => {
    // A long backlog: shards with no sign of life for an hour are merely waiting.
    const shards = [
      { id: "s0", done: false },
      { id: "s1", done: false },
    ];
    const now = T0 + 3_600_000;
    expect(shardsToRedrive(busyQueue, op(shards), { now, silenceMs: SILENCE })).toEqual([]);
    expect(worthLooking(busyQueue, op(shards), { now, silenceMs: SILENCE })).toBe(false);
  });

  it("re-drives every undone shard with no attempt or re-drive since a queue recreated after the operation", () => {
    const recreatedAt = T0 + 600_000;
    const queue = { createdAtMs: recreatedAt, emptySinceMs: undefined };
    const shards: ShardSigns[] = [
      { id: "s0", done: true, lastAttemptStartMs: T0 + 5_000 },
      // Ran before the restart, its worker died with it: its message is gone.
      { id: "s1", done: false, lastAttemptStartMs: T0 + 5_000, lastSignMs: T0 + 500_000 },
      // Never started.
      { id: "s2", done: false },
      // Started after the recreation: its message is in the new queue.
      { id: "s3", done: false, lastAttemptStartMs: recreatedAt + 1_000 },
      // Re-drive already sent after the recreation (scheduler restarted since).
      { id: "s4", done: false, lastRedriveMs: recreatedAt + 2_000 },
    ];
    const now = recreatedAt + 5_000;
    expect(worthLooking(queue, op(shards), { now, silenceMs: SILENCE })).toBe(true);
    expect(shardsToRedrive(queue, op(shards), { now, silenceMs: SILENCE })).toEqual([
      { shardId: "s1", reason: "queue-recreated" },
      { shardId: "s2", reason: "queue-recreated" },
    ]);
  });

  it("ignores a queue created before the operation was submitted", () => {
    const queue = { createdAtMs: T0 - 1, emptySinceMs: undefined };
    expect(
      shardsToRedrive(queue, op([{ id: "s0", done: false }]), {
        now: T0 + 1e7,
        silenceMs: SILENCE,
      }),
    ).toEqual([]);
  });

  it("re-drives undone shards silent since the queues were first seen empty, once the window has passed", () => {
    const emptySince = T0 + 100_000;
    const queue = { createdAtMs: T0 - 1, emptySinceMs: emptySince };
    const shards: ShardSigns[] = [
      { id: "s0", done: false, lastSignMs: emptySince - 1 },
      // Refreshed after the queues looked empty: alive (the counts lag), left alone.
      { id: "s1", done: false, lastSignMs: emptySince + 10_000 },
      { id: "s2", done: true, lastSignMs: T0 },
      { id: "s3", done: false },
    ];
    expect(
      shardsToRedrive(queue, op(shards), { now: emptySince + SILENCE - 1, silenceMs: SILENCE }),
    ).toEqual([]);
    expect(
      shardsToRedrive(queue, op(shards), { now: emptySince + SILENCE, silenceMs: SILENCE }),
    ).toEqual([
      { shardId: "s0", reason: "queue-empty" },
      { shardId: "s3", reason: "queue-empty" },
    ]);
  });

  it("does not count an empty queue seen before the split finished", () => {
    const queue = { createdAtMs: T0 - 1, emptySinceMs: T0 + 500 };
    expect(
      shardsToRedrive(queue, op([{ id: "s0", done: false }], T0, T0 + 1_000), {
        now: T0 + 1e7,
        silenceMs: SILENCE,
      }),
    ).toEqual([]);
  });

  it("keeps the start of an empty stretch and forgets it at the first message", () => {
    expect(nextEmptySince(undefined, 0, 5)).toBe(5);
    expect(nextEmptySince(5, 0, 9)).toBe(5);
    expect(nextEmptySince(5, 1, 9)).toBeUndefined();
    expect(nextEmptySince(undefined, 3, 9)).toBeUndefined();
  });

  it("property: never re-drives a done shard, nor anything while messages wait in a queue older than the operation", () => {
    const shard = fc.record({
      id: fc.string({ minLength: 1, maxLength: 4 }),
      done: fc.boolean(),
      lastAttemptStartMs: fc.option(fc.integer({ min: 0, max: 2e6 }), { nil: undefined }),
      lastSignMs: fc.option(fc.integer({ min: 0, max: 2e6 }), { nil: undefined }),
      lastRedriveMs: fc.option(fc.integer({ min: 0, max: 2e6 }), { nil: undefined }),
    });
    fc.assert(
      fc.property(
        fc.array(shard, { maxLength: 20 }),
        fc.integer({ min: 0, max: 2e6 }),
        fc.integer({ min: 0, max: 2e6 }),
        fc.option(fc.integer({ min: 0, max: 2e6 }), { nil: undefined }),
        fc.integer({ min: 0, max: 4e6 }),
        (shards, createdAtMs, queueCreatedAtMs, emptySinceMs, now) => {
          const clean = shards.map((s) =>
            Object.fromEntries(Object.entries(s).filter(([, v]) => v !== undefined)),
          ) as unknown as ShardSigns[];
          const queue = { createdAtMs: queueCreatedAtMs, emptySinceMs };
          const decisions = shardsToRedrive(queue, op(clean, createdAtMs), {
            now,
            silenceMs: SILENCE,
          });
          const done = new Set(clean.filter((s) => s.done).map((s) => s.id));
          for (const d of decisions) {
            if (done.has(d.shardId) && clean.filter((s) => s.id === d.shardId).every((s) => s.done))
              return false;
          }
          if (queueCreatedAtMs <= createdAtMs && emptySinceMs === undefined) {
            return decisions.length === 0;
          }
          return true;
        },
      ),
    );
  });
});
