/**
 * The shard processor's fault tolerance against the real local S3: checkpoints and resume,
 * interruption vs. loss, a loser stopping at its next checkpoint, attempt records and the
 * poison limit.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalAws, startLocalAws } from "../../test/support/local-aws.ts";
import { writeManifest } from "../../test/support/manifests.ts";
import { waitFor } from "../../test/support/wait.ts";
import { scriptedRunner, textRows, writeSlice } from "../../test/support/worker.ts";
import { ShardLostError } from "../shared/errors.ts";
import { keys } from "../shared/keys.ts";
import { silentLogger } from "../shared/logger.ts";
import { ObjectStore } from "../shared/object-store.ts";
import { type ResultRow, resultRowSchema } from "../shared/schemas/cells.ts";
import {
  type Attempt,
  attemptSchema,
  checkpointSchema,
  type ShardDone,
  shardDoneSchema,
} from "../shared/schemas/shard.ts";
import { COMMITTED_ELSEWHERE } from "./attempts.ts";
import { chunkListProblem } from "./checkpoint.ts";
import type { MessageOutcome, ShardResult } from "./shard-outcome.ts";
import { ShardProcessor } from "./shard-processor.ts";
import type { TaskRunner } from "./tasks/task.ts";

let aws: LocalAws;
let pluginDir: string;
const processors: ShardProcessor[] = [];

beforeAll(async () => {
  aws = await startLocalAws("faults-test");
  pluginDir = await mkdtemp(path.join(tmpdir(), "shardfleet-faults-"));
  await writeFile(
    path.join(pluginDir, "crash.mjs"),
    "export default (row) => { if (row.name === 'row 3') process.exit(3); return {}; };",
  );
});

afterAll(async () => {
  await Promise.all(processors.map((p) => p.close()));
  await aws?.close();
  await rm(pluginDir, { recursive: true, force: true });
});

function processor(runner?: TaskRunner, instanceId = "i-faults", checkpointBudget?: number) {
  const p = new ShardProcessor(
    {
      store: aws.store,
      logger: silentLogger(),
      ...(runner ? { createRunner: async () => runner } : {}),
    },
    {
      instanceId,
      market: "spot",
      pluginDir,
      ...(checkpointBudget === undefined ? {} : { checkpointBudget }),
    },
  );
  processors.push(p);
  return p;
}

const TASK = { name: "transform", options: { module: "noop" } };
const live = () => new AbortController().signal;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The shard result of a `delete` outcome (fails the test for any other outcome). */
function resultOf(outcome: MessageOutcome): ShardResult {
  if (outcome.kind !== "delete" || !outcome.result) {
    throw new Error(`expected a delete outcome with a result, got ${JSON.stringify(outcome)}`);
  }
  return outcome.result;
}

async function readRows(key: string): Promise<ResultRow[]> {
  const text = (await aws.store.getText(key)) ?? "";
  return text
    .split("\n")
    .filter(Boolean)
    .map((l) => resultRowSchema.parse(JSON.parse(l)));
}

/** Every result row of a commit, in chunk order. */
async function committedRows(done: ShardDone): Promise<ResultRow[]> {
  const out: ResultRow[] = [];
  for (const chunk of done.chunks) out.push(...(await readRows(chunk.key)));
  return out;
}

async function attemptsOf(op: string, shard: string): Promise<Attempt[]> {
  const out: Attempt[] = [];
  for (const key of await aws.store.list(keys.attemptsPrefix(op, shard))) {
    const a = await aws.store.getJson(key, attemptSchema);
    if (a) out.push(a);
  }
  return out;
}

const checkpointOf = (op: string, shard: string) =>
  aws.store.getJson(keys.checkpoint(op, shard), checkpointSchema);

/** A controllable gate: rows wait on `opened` until `open()`. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}

describe("checkpoints and resume", () => {
  it("resumes after a checkpoint at row 200 of 500: only rows 200..499 run, the commit tiles 0..500", async () => {
    const op = "op-resume";
    await writeManifest(aws.store, op, ["name"], TASK);
    const message = await writeSlice(aws.store, op, "s000000", 0, textRows(500));
    // What an earlier attempt left: two chunks and a checkpoint at 200 (one row in error).
    const earlier: ChunkSeed[] = [
      { start: 0, end: 100 },
      { start: 100, end: 200 },
    ];
    const chunks = [];
    for (const { start, end } of earlier) {
      const key = keys.chunk(op, "s000000", start, end);
      const rows = Array.from({ length: end - start }, (_, k) =>
        start + k === 150 ? { i: 150, e: "bad row" } : { i: start + k, r: { v: "earlier" } },
      );
      await aws.store.putText(key, rows.map((r) => `${JSON.stringify(r)}\n`).join(""));
      chunks.push({ key, start, end });
    }
    await aws.store.putJson(keys.checkpoint(op, "s000000"), checkpointSchema, {
      v: 1,
      operationId: op,
      shardId: "s000000",
      attemptId: "earlier",
      cursor: 200,
      chunks,
      columns: ["v"],
      errorRows: 1,
      updatedAt: new Date().toISOString(),
    });

    const runner = scriptedRunner(() => 0);
    const outcome = resultOf(
      await processor(runner).process(JSON.stringify(message), { signal: live() }),
    );
    expect(outcome).toMatchObject({
      status: "committed",
      rows: 500,
      errorRows: 1,
      rowsProcessed: 300,
      resumedFrom: 200,
    });
    expect([...runner.ran].sort((a, b) => a - b)).toEqual(
      Array.from({ length: 300 }, (_, k) => 200 + k),
    );
    const done = await aws.store.getJson(keys.done(op, "s000000"), shardDoneSchema);
    expect(done?.chunks.slice(0, 2)).toEqual(chunks);
    expect(chunkListProblem(done!.chunks, 0, 500)).toBeUndefined();
    const rows = await committedRows(done!);
    expect(rows.map((r) => r.i)).toEqual(Array.from({ length: 500 }, (_, k) => k));
    expect(rows[150]).toEqual({ i: 150, e: "bad row" });
    expect(rows[300]).toEqual({ i: 300, r: { v: 600 } });
  });

  it("checkpoints every everyRows rows; an interrupted attempt flushes the finished prefix and the next resumes there", async () => {
    const op = "op-interrupt";
    await writeManifest(aws.store, op, ["name"], TASK, {
      checkpoint: { everyRows: 50, everySeconds: 60 },
    });
    const message = JSON.stringify(await writeSlice(aws.store, op, "s000000", 0, textRows(300)));
    // Rows finish in order, one every ~3 ms.
    const first = scriptedRunner((i) => 3 * i);
    const stop = new AbortController();
    // Budget 1: checkpoints follow everyRows exactly (no spacing for the write budget).
    const running = processor(first, "i-first", 1).process(message, { signal: stop.signal });
    await waitFor("a checkpoint past row 100", async () =>
      ((await checkpointOf(op, "s000000"))?.cursor ?? 0) >= 100 ? true : undefined,
    );
    stop.abort(new Error("worker stopping (interruption notice)"));
    expect(await running).toMatchObject({
      kind: "release",
      why: "interrupted",
      afterSeconds: 0,
      reason: expect.stringMatching(/interruption notice/),
    });

    const checkpoint = await checkpointOf(op, "s000000");
    const [attempt] = await attemptsOf(op, "s000000");
    expect(attempt).toMatchObject({ cause: "interrupted", instanceId: "i-first" });
    // The final checkpoint holds every row this attempt finished: none will run again.
    expect(checkpoint?.cursor).toBe(first.ran.length);
    expect(attempt?.rowsDone).toBe(first.ran.length);
    expect(checkpoint!.chunks.length).toBeGreaterThanOrEqual(3);
    expect(chunkListProblem(checkpoint!.chunks, 0, checkpoint!.cursor)).toBeUndefined();
    expect(first.signals[0]?.aborted).toBe(true);

    const second = scriptedRunner(() => 0);
    const outcome = resultOf(
      await processor(second, "i-second").process(message, { signal: live() }),
    );
    expect(outcome).toMatchObject({ status: "committed", resumedFrom: checkpoint!.cursor });
    expect(first.ran.length + second.ran.length).toBe(300);
    const done = await aws.store.getJson(keys.done(op, "s000000"), shardDoneSchema);
    expect((await committedRows(done!)).map((r) => r.i)).toEqual(
      Array.from({ length: 300 }, (_, k) => k),
    );
  });

  it("on time, checkpoints the contiguous prefix: it stops at the first unfinished row while later rows are done", async () => {
    const op = "op-prefix";
    await writeManifest(aws.store, op, ["name"], TASK, {
      checkpoint: { everyRows: 1000, everySeconds: 0.1 },
    });
    const message = JSON.stringify(await writeSlice(aws.store, op, "s000000", 0, textRows(10)));
    const slow = gate();
    const runner = scriptedRunner((i) => (i === 3 ? slow.opened : 0));
    const running = processor(runner).process(message, { signal: live() });
    const checkpoint = await waitFor("a time-based checkpoint", () => checkpointOf(op, "s000000"));
    expect(checkpoint.cursor).toBe(3);
    expect(checkpoint.chunks).toEqual([{ key: keys.chunk(op, "s000000", 0, 3), start: 0, end: 3 }]);
    expect([...runner.ran].sort((a, b) => a - b)).toEqual([0, 1, 2, 4, 5, 6, 7, 8, 9]);
    slow.open();
    const outcome = resultOf(await running);
    expect(outcome.status).toBe("committed");
    const done = await aws.store.getJson(keys.done(op, "s000000"), shardDoneSchema);
    expect(done?.chunks.map((c) => [c.start, c.end])).toEqual([
      [0, 3],
      [3, 10],
    ]);
  });
});

interface ChunkSeed {
  start: number;
  end: number;
}

describe("exactly once", () => {
  it("a loser notices the commit at its next checkpoint, stops its rows and records itself lost", async () => {
    const op = "op-loser";
    await writeManifest(aws.store, op, ["name"], TASK, {
      checkpoint: { everyRows: 1000, everySeconds: 0.1 },
    });
    const message = JSON.stringify(await writeSlice(aws.store, op, "s000000", 0, textRows(20)));
    const never = gate();
    const runner = scriptedRunner((i) => (i < 5 ? 0 : never.opened));
    const running = processor(runner, "i-loser").process(message, { signal: live() });
    await waitFor("the loser's first checkpoint", () => checkpointOf(op, "s000000"));
    // Another worker commits the shard.
    await aws.store.putJsonIfAbsent(keys.done(op, "s000000"), shardDoneSchema, {
      v: 1,
      operationId: op,
      shardId: "s000000",
      attemptId: "winner",
      instanceId: "i-winner",
      rows: 20,
      errorRows: 0,
      columns: ["v"],
      chunks: [{ key: keys.chunk(op, "s000000", 0, 20), start: 0, end: 20 }],
      committedAt: new Date().toISOString(),
    });
    const outcome = resultOf(await running);
    expect(outcome.status).toBe("lost");
    expect(runner.signals[0]?.aborted).toBe(true);
    expect(runner.ran).toHaveLength(5);
    const [attempt] = await attemptsOf(op, "s000000");
    expect(attempt).toMatchObject({ cause: "lost", error: COMMITTED_ELSEWHERE });
    expect((await aws.store.getJson(keys.done(op, "s000000"), shardDoneSchema))?.attemptId).toBe(
      "winner",
    );
  });

  it("a shard lost to a stale receipt handle stops at once and writes no final checkpoint", async () => {
    const op = "op-lost";
    await writeManifest(aws.store, op, ["name"], TASK, {
      checkpoint: { everyRows: 5, everySeconds: 60 },
    });
    const message = JSON.stringify(await writeSlice(aws.store, op, "s000000", 0, textRows(20)));
    const later = gate();
    const runner = scriptedRunner((i) =>
      i < 5 ? 0 : i < 8 ? later.opened : new Promise(() => {}),
    );
    const lost = new AbortController();
    const running = processor(runner).process(message, { signal: lost.signal });
    await waitFor("the checkpoint at 5", async () =>
      (await checkpointOf(op, "s000000"))?.cursor === 5 ? true : undefined,
    );
    later.open();
    await waitFor("rows 5..7", async () => (runner.ran.length === 8 ? true : undefined));
    lost.abort(new ShardLostError("message m1 is no longer ours: its receipt handle is invalid"));
    // Lost to a ShardLostError: the message is left alone (abandon), with the reason.
    expect(await running).toMatchObject({
      kind: "abandon",
      reason: expect.stringMatching(/receipt handle/),
    });
    // An interruption would have flushed rows 5..7; a lost shard writes nothing more.
    expect((await checkpointOf(op, "s000000"))?.cursor).toBe(5);
    const [attempt] = await attemptsOf(op, "s000000");
    expect(attempt).toMatchObject({
      cause: "lost",
      error: expect.stringMatching(/receipt handle/),
    });
    expect(await aws.store.exists(keys.done(op, "s000000"))).toBe(false);
  });
});

describe("attempts and poison", () => {
  const failing = (): TaskRunner => ({
    columns: [],
    runRows: async () => {
      throw new Error("plugin exploded");
    },
    close: async () => {},
  });

  it("commits a shard failed after maxErrorAttempts error attempts, backing off before that", async () => {
    const op = "op-poison";
    await writeManifest(aws.store, op, ["name"], TASK, { maxErrorAttempts: 3 });
    const message = JSON.stringify(await writeSlice(aws.store, op, "s000000", 10, textRows(5)));
    const p = processor(failing());
    for (const delay of [2, 4]) {
      const outcome = await p.process(message, { signal: live() });
      expect(outcome).toMatchObject({
        kind: "release",
        why: "failed",
        afterSeconds: delay,
        reason: "plugin exploded",
      });
      expect(await aws.store.exists(keys.done(op, "s000000"))).toBe(false);
    }
    const outcome = resultOf(await p.process(message, { signal: live() }));
    expect(outcome).toMatchObject({ status: "failed", rows: 5, errorRows: 5 });
    const done = await aws.store.getJson(keys.done(op, "s000000"), shardDoneSchema);
    expect(done).toMatchObject({ rows: 5, errorRows: 5, chunks: [] });
    expect(done?.failed).toBe("shard failed after 3 error attempts: plugin exploded");
    const attempts = await attemptsOf(op, "s000000");
    expect(attempts.map((a) => a.cause)).toEqual(["error", "error", "error"]);
    expect(attempts.every((a) => a.error === "plugin exploded")).toBe(true);
  });

  it("does not count interruptions: two interrupted attempts and one error are not poison", async () => {
    const op = "op-notpoison";
    await writeManifest(aws.store, op, ["name"], TASK, { maxErrorAttempts: 3 });
    const message = JSON.stringify(await writeSlice(aws.store, op, "s000000", 0, textRows(5)));
    for (const k of [1, 2]) {
      const now = new Date().toISOString();
      await aws.store.putJson(keys.attempt(op, "s000000", `int${k}`), attemptSchema, {
        v: 1,
        attemptId: `int${k}`,
        operationId: op,
        shardId: "s000000",
        instanceId: `i-spot${k}`,
        market: "spot",
        startedAt: now,
        endedAt: now,
        rowsDone: 2,
        cause: "interrupted",
      });
    }
    const outcome = await processor(failing()).process(message, { signal: live() });
    expect(outcome).toMatchObject({
      kind: "release",
      why: "failed",
      errorAttempts: 1,
      afterSeconds: 2,
    });
    expect(await aws.store.exists(keys.done(op, "s000000"))).toBe(false);
  });

  it("does not count a storage fault as poison: the attempt ends interrupted and the retry commits", async () => {
    const op = "op-flaky-slice";
    await writeManifest(aws.store, op, ["name"], TASK, { maxErrorAttempts: 1 });
    const message = JSON.stringify(await writeSlice(aws.store, op, "s000000", 0, textRows(5)));
    // The slice read fails once the way S3 does when every retry met a reset connection.
    const flaky = new ObjectStore({ s3: aws.clients.s3 }, { bucket: aws.store.bucket });
    let faults = 1;
    const getStream = flaky.getStream.bind(flaky);
    flaky.getStream = async (key: string, signal?: AbortSignal) => {
      if (key === keys.shardInput(op, "s000000") && faults-- > 0) {
        throw Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" });
      }
      return getStream(key, signal);
    };
    const p = new ShardProcessor(
      { store: flaky, logger: silentLogger(), createRunner: async () => scriptedRunner(() => 0) },
      { instanceId: "i-flaky", market: "spot", pluginDir },
    );
    processors.push(p);
    const first = await p.process(message, { signal: live() });
    expect(first).toMatchObject({
      kind: "release",
      why: "failed",
      errorAttempts: 0,
      afterSeconds: 2,
    });
    const outcome = resultOf(await p.process(message, { signal: live() }));
    expect(outcome).toMatchObject({ status: "committed", rows: 5, errorRows: 0 });
    const attempts = await attemptsOf(op, "s000000");
    expect(attempts.map((a) => a.cause).sort()).toEqual(["completed", "interrupted"]);
    expect(attempts.find((a) => a.cause === "interrupted")?.error).toBe("read ECONNRESET");
  });

  it("records a crashed transform thread as an error attempt of the shard", async () => {
    const op = "op-crash";
    await writeManifest(aws.store, op, ["name"], {
      name: "transform",
      options: { module: "crash" },
    });
    const message = JSON.stringify(await writeSlice(aws.store, op, "s000000", 0, textRows(6)));
    const outcome = await processor().process(message, { signal: live() });
    expect(outcome).toMatchObject({ kind: "release", why: "failed" });
    const [attempt] = await attemptsOf(op, "s000000");
    expect(attempt).toMatchObject({
      cause: "error",
      error: expect.stringMatching(/^transform thread failed: /),
    });
  });

  it("relabels running attempts known to be dead as lost, and leaves live ones alone", async () => {
    const op = "op-relabel";
    await writeManifest(aws.store, op, ["name"], TASK);
    const message = JSON.stringify(await writeSlice(aws.store, op, "s000000", 0, textRows(3)));
    const running = (id: string, messageId: string, silentMs: number): Attempt => ({
      v: 1,
      attemptId: id,
      operationId: op,
      shardId: "s000000",
      instanceId: `i-${id}`,
      market: "spot",
      startedAt: new Date(Date.now() - silentMs - 1000).toISOString(),
      updatedAt: new Date(Date.now() - silentMs).toISOString(),
      messageId,
      rowsDone: 1,
      cause: "running",
    });
    const seeds = [
      running("killed", "m-this", 1000), // ran under this very message, now redelivered
      running("straggler", "m-copy", 1000), // another copy, alive
      running("silent", "m-old", 600_000), // no sign of life for ten minutes
    ];
    for (const a of seeds) {
      await aws.store.putJson(keys.attempt(op, "s000000", a.attemptId), attemptSchema, a);
    }
    const outcome = resultOf(
      await processor(scriptedRunner(() => 0)).process(message, {
        signal: live(),
        messageId: "m-this",
        receiveCount: 2,
      }),
    );
    expect(outcome.status).toBe("committed");
    const byId = new Map((await attemptsOf(op, "s000000")).map((a) => [a.attemptId, a]));
    expect(byId.get("killed")).toMatchObject({
      cause: "lost",
      error: expect.stringMatching(/no heartbeat/),
    });
    expect(byId.get("straggler")?.cause).toBe("running");
    expect(byId.get("silent")).toMatchObject({
      cause: "lost",
      error: expect.stringMatching(/no sign of life/),
    });
    const ours = [...byId.values()].find(
      (a) => a.messageId === "m-this" && a.cause === "completed",
    );
    expect(ours?.instanceId).toBe("i-faults");
    await sleep(0);
  });
});
