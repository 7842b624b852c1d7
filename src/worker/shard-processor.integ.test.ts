import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { constants, crc32, inflateRawSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalAws, startLocalAws } from "../../test/support/local-aws.ts";
import { writeManifest } from "../../test/support/manifests.ts";
import { writeSlice } from "../../test/support/worker.ts";
import { NotFoundError } from "../shared/errors.ts";
import { keys } from "../shared/keys.ts";
import { silentLogger } from "../shared/logger.ts";
import { resultRowSchema } from "../shared/schemas/cells.ts";
import { manifestSchema } from "../shared/schemas/operation.ts";
import { attemptSchema, shardDoneSchema } from "../shared/schemas/shard.ts";
import type { MessageOutcome, ShardResult } from "./shard-outcome.ts";
import { ShardProcessor } from "./shard-processor.ts";
import type { TaskRunner } from "./tasks/task.ts";

let aws: LocalAws;
let pluginDir: string;
const processors: ShardProcessor[] = [];

beforeAll(async () => {
  aws = await startLocalAws("sp-test");
  pluginDir = await mkdtemp(path.join(tmpdir(), "shardfleet-sp-"));
  await writeFile(
    path.join(pluginDir, "greet.mjs"),
    `export const columns = ["greeting"];
     export default function (row) {
       if (row.name === "boom") throw new Error("cannot greet boom");
       const out = { greeting: "hello " + row.name };
       if (row.born instanceof Date) out.bornYear = row.born.getUTCFullYear();
       return out;
     }`,
  );
  await writeFile(
    path.join(pluginDir, "slow.mjs"),
    "export default () => new Promise((r) => setTimeout(() => r({}), 60_000));",
  );
});

afterAll(async () => {
  await Promise.all(processors.map((p) => p.close()));
  await aws?.close();
  await rm(pluginDir, { recursive: true, force: true });
});

function processor(
  instanceId = "i-test",
  createRunner?: ConstructorParameters<typeof ShardProcessor>[0]["createRunner"],
) {
  const p = new ShardProcessor(
    { store: aws.store, logger: silentLogger(), ...(createRunner ? { createRunner } : {}) },
    { instanceId, market: "spot", pluginDir },
  );
  processors.push(p);
  return p;
}

const signal = () => new AbortController().signal;

/** The shard result of a `delete` outcome (fails the test for any other outcome). */
function resultOf(outcome: MessageOutcome): ShardResult {
  if (outcome.kind !== "delete" || !outcome.result) {
    throw new Error(`expected a delete outcome with a result, got ${JSON.stringify(outcome)}`);
  }
  return outcome.result;
}

async function readChunk(key: string) {
  const text = await aws.store.getText(key);
  return (text ?? "")
    .split("\n")
    .filter(Boolean)
    .map((l) => resultRowSchema.parse(JSON.parse(l)));
}

describe("ShardProcessor", () => {
  it("runs a shard: one chunk, done.json and a completed attempt record", async () => {
    const op = "op-greet";
    await writeManifest(aws.store, op, ["name", "born"], {
      name: "transform",
      options: { module: "greet" },
    });
    const message = await writeSlice(aws.store, op, "s000001", 10, [
      ["ada", new Date("1815-12-10T00:00:00Z")],
      ["boom", null],
      ["grace"],
    ]);
    const outcome = resultOf(
      await processor().process(JSON.stringify(message), { signal: signal() }),
    );
    expect(outcome).toMatchObject({
      operationId: op,
      shardId: "s000001",
      status: "committed",
      rows: 3,
      errorRows: 1,
      rowsProcessed: 3,
    });
    expect(outcome.resumedFrom).toBeUndefined();

    const done = await aws.store.getJson(keys.done(op, "s000001"), shardDoneSchema);
    const chunkKey = keys.chunk(op, "s000001", 10, 13);
    expect(done).toMatchObject({
      operationId: op,
      shardId: "s000001",
      instanceId: "i-test",
      rows: 3,
      errorRows: 1,
      columns: ["greeting", "bornYear"],
      chunks: [{ key: chunkKey, start: 10, end: 13 }],
    });
    expect(await readChunk(chunkKey)).toEqual([
      { i: 10, r: { greeting: "hello ada", bornYear: 1815 } },
      { i: 11, e: "cannot greet boom" },
      { i: 12, r: { greeting: "hello grace" } },
    ]);
    const attempt = await aws.store.getJson(
      keys.attempt(op, "s000001", done!.attemptId),
      attemptSchema,
    );
    expect(attempt).toMatchObject({ cause: "completed", rowsDone: 3, instanceId: "i-test" });
    expect(attempt?.endedAt).toBeDefined();
  });

  it("renders each chunk's output rows as a sheet segment named in done.json (its CRC and lengths right)", async () => {
    const op = "op-greet-segments";
    await writeManifest(aws.store, op, ["name", "born"], {
      name: "transform",
      options: { module: "greet" },
    });
    const message = await writeSlice(aws.store, op, "s000002", 20, [
      ["ada", new Date("1815-12-10T00:00:00Z")],
      ["boom", null],
      ["<grace>"],
    ]);
    await processor("i-seg").process(JSON.stringify(message), { signal: signal() });
    const done = await aws.store.getJson(keys.done(op, "s000002"), shardDoneSchema);
    const segment = done?.segments?.[0];
    expect(done?.segments).toHaveLength(1);
    expect(segment).toMatchObject({
      start: 20,
      end: 23,
      key: keys.segment(op, "s000002", 20, 23, done!.attemptId),
      rows: 3,
      errorRows: 1,
      columns: ["greeting", "bornYear"],
    });
    const bytes = (await aws.store.getBytes(segment!.key))!;
    expect(bytes.length).toBe(segment!.compressedSize);
    // A sync-flushed raw deflate stream: inflates without a final block.
    const xml = inflateRawSync(bytes, { finishFlush: constants.Z_SYNC_FLUSH });
    expect(xml.length).toBe(segment!.size);
    expect(crc32(xml)).toBe(segment!.crc);
    expect(xml.toString("utf8")).toBe(
      '<row r="22"><c r="A22" t="inlineStr"><is><t>ada</t></is></c><c r="B22" s="1"><v>-30701</v></c>' +
        '<c r="C22" t="inlineStr"><is><t>hello ada</t></is></c><c r="D22"><v>1815</v></c></row>' +
        '<row r="23"><c r="A23" t="inlineStr"><is><t>boom</t></is></c>' +
        '<c r="E23" t="inlineStr"><is><t>cannot greet boom</t></is></c></row>' +
        '<row r="24"><c r="A24" t="inlineStr"><is><t>&lt;grace&gt;</t></is></c>' +
        '<c r="C24" t="inlineStr"><is><t>hello &lt;grace&gt;</t></is></c></row>',
    );
  });

  it("commits an empty shard with an empty chunk", async () => {
    const op = "op-empty";
    await writeManifest(aws.store, op, ["name"], {
      name: "transform",
      options: { module: "greet" },
    });
    const message = await writeSlice(aws.store, op, "s000000", 7, []);
    const outcome = resultOf(
      await processor().process(JSON.stringify(message), { signal: signal() }),
    );
    expect(outcome).toMatchObject({ status: "committed", rows: 0, errorRows: 0 });
    expect(await aws.store.getText(keys.chunk(op, "s000000", 7, 7))).toBe("");
    expect(await aws.store.getJson(keys.done(op, "s000000"), shardDoneSchema)).toMatchObject({
      rows: 0,
      columns: ["greeting"],
    });
  });

  it("skips a shard that is already committed", async () => {
    const op = "op-again";
    await writeManifest(aws.store, op, ["name"], {
      name: "transform",
      options: { module: "greet" },
    });
    const message = JSON.stringify(await writeSlice(aws.store, op, "s000000", 0, [["x"]]));
    const p = processor();
    expect(resultOf(await p.process(message, { signal: signal() })).status).toBe("committed");
    expect(resultOf(await p.process(message, { signal: signal() })).status).toBe("already-done");
  });

  it("lets exactly one of two racing workers commit", async () => {
    const op = "op-race";
    await writeManifest(aws.store, op, ["name"], {
      name: "transform",
      options: { module: "greet" },
    });
    const message = JSON.stringify(
      await writeSlice(aws.store, op, "s000000", 0, [["a"], ["b"], ["c"]]),
    );
    const outcomes = (
      await Promise.all([
        processor("i-one").process(message, { signal: signal() }),
        processor("i-two").process(message, { signal: signal() }),
      ])
    ).map(resultOf);
    const statuses = outcomes.map((o) => o.status).sort();
    expect(statuses.filter((s) => s === "committed")).toHaveLength(1);
    expect(statuses.filter((s) => s !== "committed")).toHaveLength(1);
    const done = await aws.store.getJson(keys.done(op, "s000000"), shardDoneSchema);
    const winner =
      outcomes.find((o) => o.status === "committed") === outcomes[0] ? "i-one" : "i-two";
    expect(done?.instanceId).toBe(winner);
    expect(await readChunk(keys.chunk(op, "s000000", 0, 3))).toHaveLength(3);
  });

  it("fails clearly when the manifest or the slice is missing", async () => {
    const p = processor();
    const noManifest = JSON.stringify({
      v: 1,
      operationId: "op-none",
      shardId: "s000000",
      start: 0,
      end: 1,
    });
    expect(await p.process(noManifest, { signal: signal() })).toMatchObject({
      kind: "release",
      reason: expect.stringMatching(/operation op-none has no manifest/),
    });

    const op = "op-noslice";
    await writeManifest(aws.store, op, ["name"], {
      name: "transform",
      options: { module: "greet" },
    });
    const noSlice = JSON.stringify({ v: 1, operationId: op, shardId: "s000009", start: 0, end: 1 });
    const outcome = await p.process(noSlice, { signal: signal() });
    // An error attempt below the poison limit: retried after a backoff.
    expect(outcome).toMatchObject({ kind: "release", why: "failed", afterSeconds: 2 });
    const failed = outcome as Extract<MessageOutcome, { kind: "release" }>;
    expect(failed.err).toBeInstanceOf(NotFoundError);
    expect(failed.reason).toMatch(/shard input .*s000009\/input.ndjson does not exist/);
    const attempts = await aws.store.list(keys.attemptsPrefix(op, "s000009"));
    expect(attempts).toHaveLength(1);
    expect(await aws.store.getJson(attempts[0]!, attemptSchema)).toMatchObject({
      cause: "error",
      error: expect.stringMatching(/does not exist/),
    });
  });

  it("releases a shard whose input is not written yet while its operation splits, with no error attempt", async () => {
    const op = "op-notyet";
    const manifest = await writeManifest(aws.store, op, ["name"], {
      name: "transform",
      options: { module: "greet" },
    });
    await aws.store.putJson(keys.manifest(op), manifestSchema, {
      ...manifest,
      status: "splitting",
    });
    const early = JSON.stringify({ v: 1, operationId: op, shardId: "s000000", start: 0, end: 1 });
    const p = processor();
    // Delivered five times before the split writes the slice: never poison (limit 3).
    for (const receiveCount of [1, 2, 3, 4, 5]) {
      const outcome = await p.process(early, { signal: signal(), receiveCount });
      expect(outcome).toMatchObject({
        kind: "release",
        why: "interrupted",
        afterSeconds: 5 * receiveCount,
        reason: expect.stringMatching(/not written yet/),
      });
    }
    const attempts = await Promise.all(
      (await aws.store.list(keys.attemptsPrefix(op, "s000000"))).map((k) =>
        aws.store.getJson(k, attemptSchema),
      ),
    );
    expect(attempts.map((a) => a?.cause)).toEqual(Array(5).fill("interrupted"));
    expect(await aws.store.exists(keys.done(op, "s000000"))).toBe(false);
    // The split catches up: the next delivery runs the shard.
    await writeSlice(aws.store, op, "s000000", 0, [["ada"]]);
    await aws.store.putJson(keys.manifest(op), manifestSchema, manifest);
    expect(resultOf(await p.process(early, { signal: signal(), receiveCount: 6 }))).toMatchObject({
      status: "committed",
      rows: 1,
    });
  });

  it("commits nothing when aborted, and records the attempt as interrupted", async () => {
    const op = "op-abort";
    await writeManifest(aws.store, op, ["name"], {
      name: "transform",
      options: { module: "slow" },
    });
    const message = JSON.stringify(await writeSlice(aws.store, op, "s000000", 0, [["a"]]));
    const controller = new AbortController();
    const running = processor().process(message, { signal: controller.signal });
    setTimeout(() => controller.abort(new Error("spot reclaim")), 300);
    expect(await running).toMatchObject({
      kind: "release",
      why: "interrupted",
      afterSeconds: 0,
      reason: "spot reclaim",
    });
    expect(await aws.store.exists(keys.done(op, "s000000"))).toBe(false);
    const [attemptKey] = await aws.store.list(keys.attemptsPrefix(op, "s000000"));
    expect(await aws.store.getJson(attemptKey!, attemptSchema)).toMatchObject({
      cause: "interrupted",
    });
  });

  it("loads an operation's runner once for all its shards", async () => {
    const op = "op-cache";
    await writeManifest(aws.store, op, ["name"], {
      name: "transform",
      options: { module: "greet" },
    });
    let created = 0;
    const fake: TaskRunner = {
      columns: ["n"],
      runRows: async (rows) => rows.map((r) => ({ i: r.index, r: { n: r.index } })),
      close: async () => {},
    };
    const p = processor("i-cache", async () => {
      created++;
      return fake;
    });
    const messages = await Promise.all(
      [0, 1, 2].map((k) => writeSlice(aws.store, op, `s00000${k}`, k * 2, [["a"], ["b"]])),
    );
    await Promise.all(messages.map((m) => p.process(JSON.stringify(m), { signal: signal() })));
    expect(created).toBe(1);
  });

  it("starts a shard's checkpoint floor from the write time its processor measured before", async () => {
    const op = "op-floor";
    await writeManifest(
      aws.store,
      op,
      ["name"],
      { name: "transform", options: { module: "greet" } },
      { checkpoint: { everyRows: 2, everySeconds: 60 } },
    );
    // Reports the first two rows, then the rest: a row-count checkpoint is due after two.
    const twoThenRest: TaskRunner = {
      columns: [],
      runRows: async (rows, ctx) => {
        const out = rows.map((r) => ({ i: r.index, r: {} }));
        ctx.onResults?.(out.slice(0, 2));
        ctx.onResults?.(out.slice(2));
        return out;
      },
      close: async () => {},
    };
    const p = new ShardProcessor(
      { store: aws.store, logger: silentLogger(), createRunner: async () => twoThenRest },
      // A write may take 0.01 % of the time: once one write was timed, the floor is 60 s.
      { instanceId: "i-floor", market: "spot", pluginDir, checkpointBudget: 0.0001 },
    );
    processors.push(p);
    const rows = Array.from({ length: 6 }, (_, k) => [`r${k}`]);
    const chunksOf = async (shardId: string, start: number) => {
      const message = await writeSlice(aws.store, op, shardId, start, rows);
      resultOf(await p.process(JSON.stringify(message), { signal: signal() }));
      const done = await aws.store.getJson(keys.done(op, shardId), shardDoneSchema);
      return done?.chunks.map((c) => [c.start, c.end]);
    };
    // Nothing timed yet: the first checkpoint is due at everyRows.
    expect(await chunksOf("s000000", 0)).toEqual([
      [0, 2],
      [2, 6],
    ]);
    // Timed now: the next shard's rows wait for the floor and end in one chunk.
    expect(await chunksOf("s000001", 6)).toEqual([[6, 12]]);
  });

  it("gives a task every header's cell, empty ones for an input line shorter than the header", async () => {
    const op = "op-short";
    await writeManifest(aws.store, op, ["name", "city", "zip"], {
      name: "transform",
      options: { module: "greet" },
    });
    const seen: { values: unknown; cells: unknown }[] = [];
    const capture: TaskRunner = {
      columns: [],
      runRows: async (rows) => {
        for (const r of rows) seen.push({ values: { ...r.values }, cells: r.cells });
        return rows.map((r) => ({ i: r.index, r: {} }));
      },
      close: async () => {},
    };
    const message = await writeSlice(aws.store, op, "s000000", 0, [
      ["Ann", "Oslo", "0150"],
      ["Bo"],
    ]);
    resultOf(
      await processor("i-short", async () => capture).process(JSON.stringify(message), {
        signal: signal(),
      }),
    );
    expect(seen).toEqual([
      { values: { name: "Ann", city: "Oslo", zip: "0150" }, cells: ["Ann", "Oslo", "0150"] },
      { values: { name: "Bo", city: null, zip: null }, cells: ["Bo", null, null] },
    ]);
  });

  it("fails a shard whose operation names an unknown template column, naming it", async () => {
    const op = "op-badspec";
    await writeManifest(aws.store, op, ["name"], {
      name: "http-enrich",
      options: { url: "http://127.0.0.1:9/{nmae}", results: { a: "a" } },
    });
    const message = JSON.stringify(await writeSlice(aws.store, op, "s000000", 0, [["a"]]));
    expect(await processor().process(message, { signal: signal() })).toMatchObject({
      kind: "release",
      reason: expect.stringMatching(/unknown column \{nmae\}/),
    });
  });
});
