import { Readable } from "node:stream";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalAws, startLocalAws } from "../../test/support/local-aws.ts";
import { testManifest } from "../../test/support/manifests.ts";
import { handmadeXlsx, xlsxBuffer } from "../../test/support/workbooks.ts";
import { BadInputError } from "../shared/errors.ts";
import { keys, shardIdFor } from "../shared/keys.ts";
import { silentLogger } from "../shared/logger.ts";
import { decodeCell, type InputRow, inputRowSchema } from "../shared/schemas/cells.ts";
import type { Manifest } from "../shared/schemas/operation.ts";
import { type ShardMessage, shardMessageSchema } from "../shared/schemas/shard.ts";
import { readInputRows, SliceContexts } from "../shared/slices.ts";
import { planShards, type SplitResult, splitOperation } from "./splitter.ts";
import { DEFAULT_WORKBOOK_LIMITS } from "./workbook/limits.ts";

describe("planShards", () => {
  it("cuts 1,234 rows of 500 into [0,500) [500,1000) [1000,1234)", () => {
    expect(planShards(1234, 500)).toEqual([
      { id: "s000000", start: 0, end: 500 },
      { id: "s000001", start: 500, end: 1000 },
      { id: "s000002", start: 1000, end: 1234 },
    ]);
    expect(planShards(0, 500)).toEqual([]);
    expect(() => planShards(10, 0)).toThrow(RangeError);
  });

  it("covers [0, rows) exactly once with contiguous, non-empty shards of at most shardSize", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 20_000 }),
        fc.integer({ min: 1, max: 5_000 }),
        (rows, size) => {
          const shards = planShards(rows, size);
          let next = 0;
          const ok = shards.every((shard, k) => {
            const fits =
              shard.id === shardIdFor(k) &&
              shard.start === next &&
              shard.end > shard.start &&
              shard.end - shard.start <= size;
            next = shard.end;
            return fits;
          });
          return ok && next === rows && shards.length === Math.ceil(rows / size);
        },
      ),
    );
  });
});

describe("splitOperation (local S3 + SQS)", () => {
  let aws: LocalAws;

  beforeAll(async () => {
    aws = await startLocalAws("splitter-test");
  });
  afterAll(async () => {
    await aws?.close();
  });

  async function putInput(manifest: Manifest, body: Buffer | string) {
    await aws.store.upload(manifest.input.key, Readable.from([Buffer.from(body)]));
  }

  /**
   * A shard's input rows as workers and the merger read them: sheet XML slices for xlsx (which
   * need the split's shard ranges and header width), NDJSON for csv.
   */
  async function readSlice(op: string, shard: string, split?: SplitResult): Promise<InputRow[]> {
    const range = split?.shards.find((s) => s.id === shard);
    if (split && range) {
      const contexts = new SliceContexts({ store: aws.store });
      const slice = { operationId: op, shardId: shard, start: range.start, end: range.end };
      const out: InputRow[] = [];
      for await (const row of readInputRows(aws.store, contexts, slice, split.headers.length)) {
        out.push(row);
      }
      return out;
    }
    const text = await aws.store.getText(keys.shardInput(op, shard));
    if (text === undefined) throw new Error(`no slice ${shard}`);
    return text
      .split("\n")
      .filter(Boolean)
      .map((line) => inputRowSchema.parse(JSON.parse(line)));
  }

  async function drainQueue(url: string, expected: number): Promise<ShardMessage[]> {
    const out: ShardMessage[] = [];
    for (let polls = 0; polls < 10 && out.length < expected; polls++) {
      const got = await aws.queue.receive(url, { max: 10, waitSeconds: 1, visibilityTimeout: 60 });
      for (const m of got) {
        out.push(shardMessageSchema.parse(JSON.parse(m.body)));
        await aws.queue.delete(url, m.receiptHandle);
      }
    }
    return out.sort((a, b) => a.start - b.start);
  }

  it("writes 3 slices and 3 messages for 1,234 rows, every row index once, cell types kept", async () => {
    const when = new Date(Date.UTC(2024, 4, 6, 7, 8, 9));
    const data = await xlsxBuffer((wb) => {
      const ws = wb.addWorksheet("Customers");
      ws.addRow(["id", "name", "joined", "vip"]);
      for (let k = 0; k < 1234; k++) {
        const row = ws.addRow([k, `customer ${k}`, when, k % 2 === 0]);
        row.getCell(3).numFmt = "yyyy-mm-dd hh:mm:ss";
      }
    });
    const manifest = testManifest("op-split-1234", {
      headers: ["id", "name", "joined", "vip"],
    });
    await putInput(manifest, data);

    const queueUrl = aws.resources.queues.work;
    const result = await splitOperation(
      { store: aws.store, queue: aws.queue, logger: silentLogger() },
      { manifest, workQueueUrl: queueUrl },
    );

    expect(result.rows).toBe(1234);
    expect(result.shards).toEqual([
      { id: "s000000", start: 0, end: 500 },
      { id: "s000001", start: 500, end: 1000 },
      { id: "s000002", start: 1000, end: 1234 },
    ]);

    const seen: number[] = [];
    for (const shard of result.shards) {
      const rows = await readSlice(manifest.id, shard.id, result);
      expect(rows.map((r) => r.i)).toEqual(
        Array.from({ length: shard.end - shard.start }, (_, k) => shard.start + k),
      );
      seen.push(...rows.map((r) => r.i));
    }
    expect(seen).toEqual(Array.from({ length: 1234 }, (_, k) => k));

    const [last] = (await readSlice(manifest.id, "s000002", result)).slice(-1);
    expect(last?.c.map(decodeCell)).toEqual([1233, "customer 1233", when, false]);

    const messages = await drainQueue(queueUrl, 3);
    expect(messages).toEqual(
      result.shards.map((s) => ({
        v: 1,
        operationId: manifest.id,
        shardId: s.id,
        start: s.start,
        end: s.end,
      })),
    );
  });

  it("drops empty rows, pads short rows, and notes (never drops) cells beyond the header (csv)", async () => {
    // Until issue 13 this test asserted that "extra" and the "only-extra" row vanished silently.
    const manifest = testManifest("op-split-csv", { format: "csv", shardSize: 2 });
    await putInput(manifest, "a,b,c\n1,2,3,extra\n\n,,\n,,,only-extra\nx\n4,,6\n");
    const result = await splitOperation(
      { store: aws.store, queue: aws.queue, logger: silentLogger() },
      { manifest, workQueueUrl: aws.resources.queues.straggler },
    );
    expect(result).toMatchObject({ rows: 4, headers: ["a", "b", "c"] });
    const beyond = (row: number) =>
      `row ${row} has a value beyond the header's last column (C): D${row}, not processed`;
    expect(await readSlice(manifest.id, "s000000")).toEqual([
      { i: 0, c: [1, 2, 3], n: beyond(2) },
      { i: 1, c: [null, null, null], n: beyond(5) },
    ]);
    expect(await readSlice(manifest.id, "s000001")).toEqual([
      { i: 2, c: ["x", null, null] },
      { i: 3, c: [4, null, 6] },
    ]);
    expect(await drainQueue(aws.resources.queues.straggler, 2)).toHaveLength(2);
  });

  it("keeps CSV fields as text when the spec says csvValues: text", async () => {
    const manifest = testManifest("op-split-csv-text", { format: "csv" });
    manifest.spec.csvValues = "text";
    await putInput(manifest, "a,b\n007,42\n");
    await splitOperation(
      { store: aws.store, queue: aws.queue, logger: silentLogger() },
      { manifest, workQueueUrl: aws.resources.queues.straggler },
    );
    expect(await readSlice(manifest.id, "s000000")).toEqual([{ i: 0, c: ["007", "42"] }]);
    expect(await drainQueue(aws.resources.queues.straggler, 1)).toHaveLength(1);
  });

  it("notes a formula with no cached value and cuts text over Excel's cell limit (xlsx)", async () => {
    const long = "x".repeat(40_000);
    const data = handmadeXlsx({
      sheets: [
        {
          name: "S",
          rows:
            '<row r="1"><c r="A1" t="inlineStr"><is><t>a</t></is></c><c r="B1" t="inlineStr"><is><t>b</t></is></c></row>' +
            '<row r="2"><c r="A2"><v>1</v></c><c r="B2"><v>2</v></c></row>' +
            '<row r="3"><c r="A3"><v>3</v></c><c r="B3"><f>A3*2</f></c></row>' +
            `<row r="4"><c r="A4" t="inlineStr"><is><t>${long}</t></is></c></row>`,
        },
      ],
    });
    const manifest = testManifest("op-split-notes", { headers: ["a", "b"] });
    await putInput(manifest, data);
    const result = await splitOperation(
      { store: aws.store, queue: aws.queue, logger: silentLogger() },
      { manifest, workQueueUrl: aws.resources.queues.straggler },
    );
    expect(result.rows).toBe(3);
    const rows = await readSlice(manifest.id, "s000000", result);
    expect(rows[0]).toEqual({ i: 0, c: [1, 2] });
    expect(rows[1]).toEqual({
      i: 1,
      c: [3, null],
      n: "cell B3 holds a formula with no calculated value (=A3*2): open and save the workbook in Excel or LibreOffice so its values are calculated",
    });
    expect(rows[2]?.c).toEqual(["x".repeat(32_767), null]);
    expect(rows[2]?.n).toBe(
      "cell A4 has more than 32,767 characters, Excel's limit for a cell: cut to 32,767",
    );
    expect(await drainQueue(aws.resources.queues.straggler, 1)).toHaveLength(1);
  });

  it("fails a split with more data rows than the limit, naming the setting", async () => {
    const manifest = testManifest("op-split-rows", { format: "csv" });
    await putInput(manifest, "a\n1\n2\n3\n");
    await expect(
      splitOperation(
        { store: aws.store, queue: aws.queue, logger: silentLogger() },
        {
          manifest,
          workQueueUrl: aws.resources.queues.dlq,
          limits: { ...DEFAULT_WORKBOOK_LIMITS, maxRows: 2 },
        },
      ),
    ).rejects.toThrow("workbook has more than 2 data rows, the limit (SHARDFLEET_MAX_ROWS)");
  });

  it("refuses a workbook with no data rows and queues nothing", async () => {
    const manifest = testManifest("op-split-empty", { format: "csv" });
    await putInput(manifest, "a,b\n,\n");
    const err = await splitOperation(
      { store: aws.store, queue: aws.queue, logger: silentLogger() },
      { manifest, workQueueUrl: aws.resources.queues.dlq },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BadInputError);
    expect((err as BadInputError).message).toBe("workbook has a header row but no data rows");
    const got = await aws.queue.receive(aws.resources.queues.dlq, {
      max: 10,
      waitSeconds: 0,
      visibilityTimeout: 1,
    });
    expect(got).toEqual([]);
  });

  it("refuses a header row that differs from the manifest's", async () => {
    const manifest = testManifest("op-split-headers", { format: "csv", headers: ["a", "b"] });
    await putInput(manifest, "a,c\n1,2\n");
    await expect(
      splitOperation(
        { store: aws.store, queue: aws.queue, logger: silentLogger() },
        { manifest, workQueueUrl: aws.resources.queues.dlq },
      ),
    ).rejects.toThrow(/differs from the one read at submission/);
  });

  it("names the missing input object", async () => {
    const manifest = testManifest("op-split-missing");
    await expect(
      splitOperation(
        { store: aws.store, queue: aws.queue, logger: silentLogger() },
        { manifest, workQueueUrl: aws.resources.queues.dlq },
      ),
    ).rejects.toThrow(`input workbook ${manifest.input.key} not found`);
  });
});
