/**
 * The done marker's one module against the real local S3: the worker's commit and the
 * dead-letter path write through it, and whichever comes first wins.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalAws, startLocalAws } from "../../../test/support/local-aws.ts";
import type { Clock } from "../clock.ts";
import { keys } from "../keys.ts";
import { shardDoneSchema } from "../schemas/shard.ts";
import { commitDeadLettered, commitDone, DEAD_LETTERED, isCommitted } from "./done-marker.ts";

let aws: LocalAws;
const clock: Clock = {
  now: () => Date.parse("2030-01-01T00:00:00Z"),
  sleep: () => Promise.resolve(),
};
const live = () => new AbortController().signal;

beforeAll(async () => {
  aws = await startLocalAws("done-marker");
});
afterAll(async () => {
  await aws?.close();
});

const shard = (op: string) => ({ operationId: op, shardId: "s000003", start: 30, end: 40 });

describe("done marker", () => {
  it("a worker's commit names its attempt and chunks; a second commit loses and changes nothing", async () => {
    const op = "op-dm-worker";
    const chunks = [{ key: keys.chunk(op, "s000003", 30, 40), start: 30, end: 40 }];
    const by = { operationId: op, shardId: "s000003", attemptId: "a-1", instanceId: "i-1" };
    const result = { rows: 10, errorRows: 1, columns: ["v"], chunks };
    expect(await isCommitted(aws.store, by, live())).toBe(false);
    expect(await commitDone({ store: aws.store, clock }, by, result, live())).toBe(true);
    expect(
      await commitDone(
        { store: aws.store, clock },
        { ...by, attemptId: "a-2", instanceId: "i-2" },
        result,
        live(),
      ),
    ).toBe(false);
    expect(await isCommitted(aws.store, by, live())).toBe(true);
    const done = await aws.store.getJson(keys.done(op, "s000003"), shardDoneSchema);
    expect(done).toEqual({
      v: 1,
      ...by,
      ...result,
      committedAt: "2030-01-01T00:00:00.000Z",
    });
  });

  it("the dead-letter path commits every row failed, unless a worker committed first", async () => {
    const op = "op-dm-dlq";
    expect(await commitDeadLettered({ store: aws.store, clock }, shard(op), "m-9", live())).toBe(
      true,
    );
    expect(await aws.store.getJson(keys.done(op, "s000003"), shardDoneSchema)).toMatchObject({
      attemptId: "dlq-m-9",
      instanceId: "scheduler",
      rows: 10,
      errorRows: 10,
      columns: [],
      chunks: [],
      failed: DEAD_LETTERED,
    });

    const late = "op-dm-late";
    await commitDone(
      { store: aws.store, clock },
      { operationId: late, shardId: "s000003", attemptId: "a-1", instanceId: "i-1" },
      { rows: 10, errorRows: 0, columns: [], chunks: [] },
      live(),
    );
    expect(await commitDeadLettered({ store: aws.store, clock }, shard(late), "m-10", live())).toBe(
      false,
    );
    const kept = await aws.store.getJson(keys.done(late, "s000003"), shardDoneSchema);
    expect(kept).toMatchObject({ attemptId: "a-1", errorRows: 0 });
    expect(kept?.failed).toBeUndefined();
  });
});
