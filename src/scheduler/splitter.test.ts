import { Readable } from "node:stream";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalAws, startLocalAws } from "../../test/support/local-aws.ts";
import { testManifest } from "../../test/support/manifests.ts";
import {
  addCellKindsRow,
  CELL_KINDS,
  handmadeXlsx,
  xlsxBuffer,
} from "../../test/support/workbooks.ts";
import { BadInputError } from "../shared/errors.ts";
import { keys, shardIdFor } from "../shared/keys.ts";
import { silentLogger } from "../shared/logger.ts";
import { decodeCell, encodeCell, type InputRow, inputRowSchema } from "../shared/schemas/cells.ts";
import type { Manifest } from "../shared/schemas/operation.ts";
import { type ShardMessage, shardMessageSchema } from "../shared/schemas/shard.ts";
import { readInputRows, SliceContexts } from "../shared/slices.ts";
import { cutLongCells, rowProblems } from "../shared/workbook/row-checks.ts";
import { fitRow } from "../shared/workbook/row-shape.ts";
import { planShards, type SplitResult, splitOperation } from "./splitter.ts";
import { objectByteSource } from "./workbook/byte-source.ts";
import { DEFAULT_WORKBOOK_LIMITS } from "./workbook/limits.ts";
import { readWorkbookRows } from "./workbook/read-rows.ts";

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

  /** The rows the one-pass reader gives, fitted as the splitter always fitted them. */
  async function readerRows(manifest: Manifest, width: number): Promise<InputRow[]> {
    const source = await objectByteSource(aws.store, manifest.input.key);
    const out: InputRow[] = [];
    let header = true;
    for await (const row of readWorkbookRows(source, { format: "xlsx" })) {
      if (header) {
        header = false;
        continue;
      }
      const problems = rowProblems(row, width);
      out.push({
        i: out.length,
        c: cutLongCells(fitRow(row.cells, width)).map(encodeCell),
        ...(problems.length > 0 ? { n: problems.join("; ") } : {}),
      });
    }
    return out;
  }

  it("workers read from the sheet XML slices exactly the rows the one-pass reader gives (every cell meaning)", async () => {
    const built = await xlsxBuffer((wb) => {
      const ws = wb.addWorksheet("Data");
      ws.addRow(CELL_KINDS);
      for (let k = 0; k < 7; k++) {
        addCellKindsRow(ws, k + 2, { text: `a${k}`, number: 1.5 + k, bool: k % 2 === 0 });
      }
      ws.addRow([]);
      ws.addRow(["after a blank row", 9]);
    });
    const long = "y".repeat(33_000);
    const handmade = handmadeXlsx({
      sharedStrings: [
        "<t>h1</t>",
        "<r><t>h</t></r><r><t>2</t></r>",
        "<t>s &amp; t</t>",
        "<t>x</t><rPh><t>ふり</t></rPh>",
      ],
      numFmts: { 164: "d/m/yy;@" },
      xfs: [0, 164, 22],
      date1904: true,
      sheets: [
        {
          name: "Hand",
          dimension: "A1:C9",
          rows:
            '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c></row>' +
            '<row r="2" spans="1:2"><c r="A2" s="1"/><c r="B2" s="2"/></row>' +
            '<row r="3"><c r="A3" t="s"><v>2</v></c><c r="B3" s="1"><v>45293</v></c><c r="C3"><v>7</v></c></row>' +
            '<row><c t="s"><v>3</v></c><c s="2"><v>45293.5</v></c></row>' +
            '<row r="6"/>' +
            '<row><c r="B7"><f>A1</f></c></row>' +
            `<row r="8"><c r="A8" t="inlineStr"><is><t>${long}</t></is></c><c r="B8" t="d"><v>2024-03-04T05:06:07Z</v></c></row>` +
            '<row r="9"><c r="A9" t="str"><f>A1</f><v>a &amp; b</v></c><c r="B9" t="b"><v>1</v></c></row>',
        },
      ],
    });
    for (const [name, data, shardSize] of [
      ["exceljs", built, 3],
      ["handmade", handmade, 2],
    ] as const) {
      const manifest = testManifest(`op-split-same-${name}`, { shardSize });
      await putInput(manifest, data);
      const result = await splitOperation(
        { store: aws.store, queue: aws.queue, logger: silentLogger() },
        { manifest, workQueueUrl: aws.resources.queues.straggler },
      );
      const sliced: InputRow[] = [];
      for (const shard of result.shards)
        sliced.push(...(await readSlice(manifest.id, shard.id, result)));
      const expected = await readerRows(manifest, result.headers.length);
      expect(sliced).toEqual(expected);
      expect(result.rows).toBe(expected.length);
      expect(await drainQueue(aws.resources.queues.straggler, result.shards.length)).toHaveLength(
        result.shards.length,
      );
    }
  });

  it("a split stopped part-way (a lost lease) resumes after its last slice: none before it written again, every row once", async () => {
    // Rows with and without their own number, empty rows skipped, shared and inline strings: the
    // resumed scan must number and keep rows exactly as an uninterrupted one does.
    let rows = '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c></row>';
    for (let k = 0; k < 23; k++) {
      if (k % 5 === 3) rows += "<row/>";
      rows +=
        k % 3 === 0 // each slice starts with a row numbered after the one before it
          ? `<row><c t="inlineStr"><is><t>r${k}</t></is></c><c><v>${k}</v></c><c><v>9</v></c></row>`
          : `<row r="${3 * k + 5}"><c r="A${3 * k + 5}" t="s"><v>2</v></c><c r="B${3 * k + 5}"><v>${k}</v></c></row>`;
    }
    const data = handmadeXlsx({
      sharedStrings: ["<t>id</t>", "<t>n</t>", "<t>shared</t>"],
      sheets: [{ name: "S", rows }],
    });
    const fresh = testManifest("op-split-resume-fresh", { shardSize: 3, headers: ["id", "n"] });
    const manifest = testManifest("op-split-resume", { shardSize: 3, headers: ["id", "n"] });
    await putInput(fresh, data);
    await putInput(manifest, data);
    const whole = await splitOperation(
      { store: aws.store, queue: { sendShards: async () => {} }, logger: silentLogger() },
      { manifest: fresh, workQueueUrl: aws.resources.queues.dlq },
    );
    expect(whole.shards).toHaveLength(8);

    /** The store, with every write's key recorded. */
    const recording = (written: string[], after?: (key: string) => void) =>
      new Proxy(aws.store, {
        get(target, name) {
          const value = Reflect.get(target, name, target);
          if (typeof value !== "function") return value;
          if (name !== "upload" && name !== "putText") return value.bind(target);
          return async (key: string, ...rest: unknown[]) => {
            written.push(key);
            await value.call(target, key, ...rest);
            after?.(key);
          };
        },
      });
    const slice = (k: number) => keys.shardSheetSlice(manifest.id, shardIdFor(k));

    // The first holder loses its lease once slice 2 is written.
    const lease = new AbortController();
    const lost = new Error("lease lost");
    const firstWrites: string[] = [];
    const firstSent: ShardMessage[] = [];
    const first = splitOperation(
      {
        store: recording(firstWrites, (key) => key === slice(2) && lease.abort(lost)),
        queue: { sendShards: async (_url, batch) => void firstSent.push(...batch) },
        logger: silentLogger(),
      },
      { manifest, workQueueUrl: aws.resources.queues.dlq, signal: lease.signal },
    );
    await expect(first).rejects.toBe(lost);
    expect(firstWrites).toContain(slice(2));
    expect(firstWrites).not.toContain(slice(7));

    // The next holder goes on from there.
    const secondWrites: string[] = [];
    const secondSent: ShardMessage[] = [];
    const result = await splitOperation(
      {
        store: recording(secondWrites),
        queue: { sendShards: async (_url, batch) => void secondSent.push(...batch) },
        logger: silentLogger(),
      },
      { manifest, workQueueUrl: aws.resources.queues.dlq },
    );
    expect(secondWrites).not.toContain(slice(0));
    expect(secondWrites).not.toContain(slice(1));
    expect(secondWrites).not.toContain(slice(2));
    expect(secondWrites).not.toContain(keys.sharedStrings(manifest.id));
    expect(secondWrites).not.toContain(keys.sliceContext(manifest.id));
    expect(secondWrites).toContain(slice(7));
    expect(result.rows).toBe(whole.rows);
    expect(result.shards).toEqual(whole.shards);
    // Every shard handed over once, in order, with its range.
    expect(secondSent.map(({ shardId, start, end }) => ({ id: shardId, start, end }))).toEqual(
      whole.shards,
    );
    // The slices are the uninterrupted split's, byte for byte, and read as every row once.
    for (const shard of whole.shards) {
      expect(await aws.store.getText(keys.shardSheetSlice(manifest.id, shard.id))).toBe(
        await aws.store.getText(keys.shardSheetSlice(fresh.id, shard.id)),
      );
    }
    const sliced: InputRow[] = [];
    for (const shard of result.shards)
      sliced.push(...(await readSlice(manifest.id, shard.id, result)));
    expect(sliced).toEqual(await readerRows(manifest, 2));
    expect(sliced.map((r) => r.i)).toEqual([...Array(whole.rows).keys()]);
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
