/**
 * The attempt record's one owner against the real local S3: start, progress, refresh, end with
 * its cause; its live attempts are its own (two owners in one process are two processes).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeClock } from "../../test/support/fake-clock.ts";
import { type LocalAws, startLocalAws } from "../../test/support/local-aws.ts";
import { systemClock } from "../shared/clock.ts";
import { RetryableError } from "../shared/errors.ts";
import { keys } from "../shared/keys.ts";
import { silentLogger } from "../shared/logger.ts";
import { ObjectStore } from "../shared/object-store.ts";
import { type Attempt, attemptSchema, type ShardMessage } from "../shared/schemas/shard.ts";
import { AttemptRecords } from "./attempt-records.ts";

let aws: LocalAws;

beforeAll(async () => {
  aws = await startLocalAws("attempt-records");
});
afterAll(async () => {
  await aws?.close();
});

const live = () => new AbortController().signal;
const logger = silentLogger();

function owner(clock: FakeClock, instanceId = "i-rec") {
  return new AttemptRecords(
    { store: aws.store, clock },
    { instanceId, market: "on-demand", staleAfterMs: 120_000 },
  );
}

const shard = (op: string): ShardMessage => ({
  v: 1,
  operationId: op,
  shardId: "s000000",
  start: 0,
  end: 10,
});

const read = (op: string, attemptId: string) =>
  aws.store.getJson(keys.attempt(op, "s000000", attemptId), attemptSchema);

describe("AttemptRecords", () => {
  it("starts a running record, refreshes its sign of life, ends it once with its cause", async () => {
    const clock = new FakeClock();
    const records = owner(clock);
    const op = "op-rec-life";
    const attempt = await records.start(shard(op), { signal: live(), messageId: "m-1" }, logger);
    expect(records.live.has(attempt.attemptId)).toBe(true);
    expect(await read(op, attempt.attemptId)).toMatchObject({
      cause: "running",
      instanceId: "i-rec",
      market: "on-demand",
      messageId: "m-1",
      rowsDone: 0,
      startedAt: "2030-01-01T00:00:00.000Z",
    });

    attempt.addRows(3);
    attempt.addRows(4);
    await clock.advance(10_000);
    await attempt.refresh(live());
    expect(await read(op, attempt.attemptId)).toMatchObject({
      cause: "running",
      rowsDone: 7,
      updatedAt: "2030-01-01T00:00:10.000Z",
    });

    await clock.advance(5_000);
    await attempt.end("error", "plugin exploded");
    await attempt.end("completed");
    const ended = await read(op, attempt.attemptId);
    expect(ended).toMatchObject({
      cause: "error",
      error: "plugin exploded",
      rowsDone: 7,
      endedAt: "2030-01-01T00:00:15.000Z",
    });
    expect(records.live.has(attempt.attemptId)).toBe(false);
    // Ended: a refresh writes nothing more.
    await attempt.refresh(live());
    expect((await read(op, attempt.attemptId))?.cause).toBe("error");
  });

  it("never lets a refresh under way land after the end", async () => {
    const clock = new FakeClock();
    const op = "op-rec-race";
    // The refresh's PUT is slow on the wire: without waiting for it, the end would land first
    // and the refresh would then overwrite it with `running`.
    const slow = new ObjectStore({ s3: aws.clients.s3 }, { bucket: aws.store.bucket });
    const putJson = slow.putJson.bind(slow);
    slow.putJson = (async (key, schema, body, signal) => {
      const record = body as Attempt;
      if (record.cause === "running" && record.rowsDone === 10) {
        await new Promise((r) => setTimeout(r, 300));
      }
      return putJson(key, schema, body, signal);
    }) as typeof slow.putJson;
    const records = new AttemptRecords(
      { store: slow, clock },
      { instanceId: "i-rec", market: "spot", staleAfterMs: 120_000 },
    );
    const attempt = await records.start(shard(op), { signal: live() }, logger);
    attempt.setRows(10);
    const refreshing = attempt.refresh(live());
    await attempt.end("completed");
    await refreshing;
    expect(await read(op, attempt.attemptId)).toMatchObject({ cause: "completed", rowsDone: 10 });
  });

  it("writes the end again after transient faults the SDK's own tries did not ride out", async () => {
    const op = "op-rec-flaky-end";
    // The first two writes of the end fail as throttling would after the SDK's three tries;
    // before, the record stayed `running`, and was later relabelled `lost`: a completed attempt
    // counted as wasted work.
    const flaky = new ObjectStore({ s3: aws.clients.s3 }, { bucket: aws.store.bucket });
    const putJson = flaky.putJson.bind(flaky);
    let failures = 2;
    flaky.putJson = (async (key, schema, body, signal) => {
      if ((body as Attempt).cause === "completed" && failures > 0) {
        failures--;
        throw new RetryableError("SlowDown: Please reduce your request rate.");
      }
      return putJson(key, schema, body, signal);
    }) as typeof flaky.putJson;
    const records = new AttemptRecords(
      { store: flaky, clock: systemClock },
      { instanceId: "i-rec", market: "spot", staleAfterMs: 120_000 },
    );
    const attempt = await records.start(shard(op), { signal: live() }, logger);
    attempt.setRows(10);
    await attempt.end("completed");
    expect(failures).toBe(0);
    expect(await read(op, attempt.attemptId)).toMatchObject({ cause: "completed", rowsDone: 10 });
  });

  it("keeps its live attempts to itself: another owner on the instance relabels them lost", async () => {
    const clock = new FakeClock();
    const op = "op-rec-owners";
    const first = owner(clock);
    const mine = await first.start(shard(op), { signal: live(), messageId: "m-a" }, logger);
    // The same owner starting another attempt at the shard leaves its own running one alone.
    const again = await first.start(shard(op), { signal: live(), messageId: "m-b" }, logger);
    expect((await read(op, mine.attemptId))?.cause).toBe("running");

    // A second owner (a later process on the same instance) knows the first is gone.
    const second = owner(clock);
    await second.start(shard(op), { signal: live(), messageId: "m-c" }, logger);
    for (const id of [mine.attemptId, again.attemptId]) {
      expect(await read(op, id)).toMatchObject({
        cause: "lost",
        error: expect.stringMatching(/^relabelled by i-rec: its worker process/),
      });
    }
  });

  it("lists a shard's records for the poison count", async () => {
    const clock = new FakeClock();
    const op = "op-rec-list";
    const records = owner(clock);
    const a = await records.start(shard(op), { signal: live() }, logger);
    await a.end("error", "boom");
    const b = await records.start(shard(op), { signal: live() }, logger);
    await b.end("interrupted");
    const causes = (await records.list(shard(op), live())).map((x: Attempt) => x.cause).sort();
    expect(causes).toEqual(["error", "interrupted"]);
  });

  it("starts nothing when the shard's signal is already aborted", async () => {
    const clock = new FakeClock();
    const op = "op-rec-aborted";
    const records = owner(clock);
    const stop = new AbortController();
    stop.abort(new Error("stopping"));
    await expect(records.start(shard(op), { signal: stop.signal }, logger)).rejects.toThrow();
    expect(records.live.size).toBe(0);
    expect(await aws.store.list(keys.attemptsPrefix(op, "s000000"))).toEqual([]);
  });
});
