/**
 * The bad-workbook corpus (issue 13, part C): hostile or malformed workbooks generated here —
 * zip bombs in both entry orders, lying entry sizes, too many entries, columns, rows or
 * characters, corrupt zips, blank first rows, ragged CSV, uncalculated formulas — each posted
 * to the real API over a real local S3/SQS server. Every case asserts the status, that the
 * message names the limit or the problem, that nothing was persisted (no object, no message)
 * and that no temporary file survived (the process's TMPDIR is a directory of its own).
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DEFAULT_WORKBOOK_LIMITS,
  type WorkbookLimits,
} from "../../src/scheduler/workbook/limits.ts";
import { OPERATIONS_PREFIX, SCRATCH_PREFIX } from "../../src/shared/keys.ts";
import { type FormPart, multipart, testApp, transformSpec } from "../support/api.ts";
import { type LocalAws, startLocalAws } from "../support/local-aws.ts";
import { type HandmadeSheet, handmadeEntries, zipOf } from "../support/workbooks.ts";

const XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const MIB = 1024 * 1024;

/** Small limits so that bombs stay small on disk and quick to build. */
const LIMITS: WorkbookLimits = {
  ...DEFAULT_WORKBOOK_LIMITS,
  maxSheetBytes: 8 * MIB,
  maxPartBytes: 2 * MIB,
  maxCompressionRatio: 200,
  maxEntries: 500,
  maxRows: 1000,
};

let env: LocalAws;
let app: FastifyInstance;
let ownTmp: string;
const originalTmp = process.env.TMPDIR;

beforeAll(async () => {
  // Everything this process writes to the system's temporary directory lands here.
  ownTmp = mkdtempSync(path.join(tmpdir(), "corpus-"));
  process.env.TMPDIR = ownTmp;
  env = await startLocalAws("workbook-corpus");
  app = testApp(env, { maxUploadBytes: MIB, workbookLimits: LIMITS }).app;
});

afterAll(async () => {
  await app?.close();
  await env?.close();
  if (originalTmp === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = originalTmp;
  rmSync(ownTmp, { recursive: true, force: true });
});

// --- building workbooks ---------------------------------------------------------------

const inline = (text: string, ref = "") =>
  `<c${ref ? ` r="${ref}"` : ""} t="inlineStr"><is><t>${text}</t></is></c>`;
const row = (n: number, cells: string) => `<row r="${n}">${cells}</row>`;
const HEADER = row(1, inline("id", "A1") + inline("name", "B1"));
const DATA = row(2, `<c r="A2"><v>1</v></c>${inline("ada", "B2")}`);

/** Deflated, Excel's entry order (sheets before shared strings) unless `partsFirst`. */
function xlsx(sheet: Omit<HandmadeSheet, "name">, extra: { partsFirst?: boolean } = {}): Buffer {
  return zipOf(
    handmadeEntries({
      sheets: [{ name: "Data", ...sheet }],
      sharedStrings: ["<t>shared</t>"],
      partsFirst: extra.partsFirst ?? false,
    }),
  );
}

/** `bytes` of sheet XML that compresses about a thousand-fold: the stuff of zip bombs. */
function bombRows(bytes: number): string {
  const unit = row(3, inline("x".repeat(64)));
  return HEADER + DATA + unit.repeat(Math.ceil(bytes / unit.length));
}

/** A workbook whose sheet (or shared strings) is a bomb of `bytes`, in either entry order. */
function bomb(
  bytes: number,
  options: { sheetFirst: boolean; in?: "sheet" | "sharedStrings" },
): Buffer {
  const entries = handmadeEntries({
    sheets: [
      { name: "Data", rows: options.in === "sharedStrings" ? HEADER + DATA : bombRows(bytes) },
    ],
    sharedStrings:
      options.in === "sharedStrings"
        ? Array.from({ length: Math.ceil(bytes / 80) }, () => `<t>${"y".repeat(64)}</t>`)
        : ["<t>s</t>"],
    partsFirst: !options.sheetFirst,
  });
  return zipOf(entries);
}

// --- posting and checking -----------------------------------------------------------------

async function post(file: FormPart, spec: unknown = transformSpec()) {
  const { payload, headers } = await multipart([
    { name: "spec", value: JSON.stringify(spec) },
    file,
  ]);
  return app.inject({ method: "POST", url: "/operations", payload, headers });
}

const xlsxFile = (data: Buffer, filename = "input.xlsx"): FormPart => ({
  name: "file",
  filename,
  type: XLSX,
  data,
});
const csvFile = (text: string): FormPart => ({
  name: "file",
  filename: "input.csv",
  type: "text/csv",
  data: text,
});

async function expectNothingLeft(): Promise<void> {
  expect([
    ...(await env.store.list(OPERATIONS_PREFIX)),
    ...(await env.store.list(SCRATCH_PREFIX)),
  ]).toEqual([]);
  expect(
    await env.queue.receive(env.resources.queues.work, {
      max: 10,
      waitSeconds: 0,
      visibilityTimeout: 0,
    }),
  ).toEqual([]);
  expect(readdirSync(ownTmp)).toEqual([]);
}

async function expectRefused(
  res: Awaited<ReturnType<typeof post>>,
  status: number,
  code: string,
  message: RegExp,
): Promise<void> {
  expect({ status: res.statusCode, code: res.json().error?.code }).toEqual({ status, code });
  expect(res.json().error.message).toMatch(message);
  expect(res.body).not.toMatch(/\n\s+at /); // no stack trace
  await expectNothingLeft();
}

describe("the workbook corpus: refused at intake, nothing left behind", () => {
  it("controls: a well-formed workbook in both entry orders, and a CSV, are accepted", async () => {
    try {
      for (const partsFirst of [false, true]) {
        const res = await post(xlsxFile(xlsx({ rows: HEADER + DATA }, { partsFirst })));
        expect(res.statusCode).toBe(202);
      }
      expect((await post(csvFile("id,name\n1,ada\n"))).statusCode).toBe(202);
      // The bomb shape below the ratio floor passes: the refusals below are the limits'.
      expect((await post(xlsxFile(bomb(MIB / 2, { sheetFirst: true })))).statusCode).toBe(202);
      expect(readdirSync(ownTmp)).toEqual([]);
    } finally {
      await env.store.deletePrefix(OPERATIONS_PREFIX);
      await env.store.deletePrefix(SCRATCH_PREFIX);
    }
  });

  it("not-xlsx: text named .xlsx is 415", async () => {
    const res = await post(xlsxFile(Buffer.from("id,name\n1,ada\n")));
    await expectRefused(res, 415, "UNSUPPORTED_MEDIA_TYPE", /not a zip archive/);
  });

  it("a zip that holds no workbook is 422", async () => {
    const res = await post(xlsxFile(zipOf([{ name: "notes.txt", data: "hello" }])));
    await expectRefused(res, 422, "WORKBOOK_INVALID", /file is not a readable xlsx workbook/);
  });

  it("a truncated zip is 422", async () => {
    const whole = xlsx({ rows: HEADER + DATA });
    const res = await post(xlsxFile(whole.subarray(0, Math.floor(whole.length * 0.7))));
    await expectRefused(res, 422, "WORKBOOK_INVALID", /file is not a readable xlsx workbook/);
  });

  it("a corrupt tail (central directory) after a big sheet is 422, with no temporary file", async () => {
    const whole = bomb(4 * MIB, { sheetFirst: true });
    const bad = Buffer.from(whole);
    bad.fill(0x41, bad.length - 200, bad.length - 30);
    await expectRefused(
      await post(xlsxFile(bad)),
      422,
      "WORKBOOK_INVALID",
      /file is not a readable xlsx workbook/,
    );
  });

  it("corrupt deflate data in the sheet is 422", async () => {
    const entries = handmadeEntries({ sheets: [{ name: "Data", rows: HEADER + DATA }] });
    const good = zipOf(entries);
    const sheetAt = good.indexOf("xl/worksheets/sheet1.xml") + "xl/worksheets/sheet1.xml".length;
    const bad = Buffer.from(good);
    bad.fill(0xff, sheetAt, sheetAt + 40);
    await expectRefused(
      await post(xlsxFile(bad)),
      422,
      "WORKBOOK_INVALID",
      /file is not a readable xlsx workbook/,
    );
  });

  for (const sheetFirst of [true, false]) {
    it(`a zip bomb with the sheet ${sheetFirst ? "before" : "after"} the shared strings is 413, naming SHARDFLEET_MAX_INFLATED_MB`, async () => {
      const data = bomb(32 * MIB, { sheetFirst });
      expect(data.length).toBeLessThan(MIB / 4); // small on disk
      await expectRefused(
        await post(xlsxFile(data)),
        413,
        "PAYLOAD_TOO_LARGE",
        /xl\/worksheets\/sheet1\.xml inflates to 32 MiB, over the limit of 8 MiB \(SHARDFLEET_MAX_INFLATED_MB\)/,
      );
    });
  }

  it("a shared-strings bomb is 413, naming SHARDFLEET_MAX_SHARED_STRINGS_MB", async () => {
    await expectRefused(
      await post(xlsxFile(bomb(16 * MIB, { sheetFirst: true, in: "sharedStrings" }))),
      413,
      "PAYLOAD_TOO_LARGE",
      /xl\/sharedStrings\.xml inflates to .* over the limit of 2 MiB \(SHARDFLEET_MAX_SHARED_STRINGS_MB\)/,
    );
  });

  it("a bomb under the size limit but over the compression ratio is 413, naming the ratio limit", async () => {
    await expectRefused(
      await post(xlsxFile(bomb(6 * MIB, { sheetFirst: false }))),
      413,
      "PAYLOAD_TOO_LARGE",
      /inflates \d+-fold .* over the compression ratio limit of 200 \(SHARDFLEET_MAX_COMPRESSION_RATIO\)/,
    );
  });

  it("a bomb whose entry lies about its inflated size is stopped at the declared size (413)", async () => {
    const entries = handmadeEntries({
      sheets: [{ name: "Data", rows: bombRows(16 * MIB) }],
      partsFirst: false,
    });
    const lying = entries.map((e) =>
      e.name === "xl/worksheets/sheet1.xml" ? { ...e, declaredSize: 100 } : e,
    );
    await expectRefused(
      await post(xlsxFile(zipOf(lying))),
      413,
      "PAYLOAD_TOO_LARGE",
      /xl\/worksheets\/sheet1\.xml inflates past the 100 bytes its zip entry declares/,
    );
  });

  it("too many zip entries is 413, naming SHARDFLEET_MAX_ZIP_ENTRIES", async () => {
    const entries = [
      ...handmadeEntries({ sheets: [{ name: "Data", rows: HEADER + DATA }] }),
      ...Array.from({ length: 600 }, (_, k) => ({ name: `xl/media/pad${k}.txt`, data: "" })),
    ];
    await expectRefused(
      await post(xlsxFile(zipOf(entries))),
      413,
      "PAYLOAD_TOO_LARGE",
      /603 zip entries, over the limit of 500 \(SHARDFLEET_MAX_ZIP_ENTRIES\)/,
    );
  });

  it("16,384 columns is 422: the error column would be column 16,385", async () => {
    const header = row(1, Array.from({ length: 16_384 }, (_, k) => inline(`c${k}`)).join(""));
    await expectRefused(
      await post(xlsxFile(xlsx({ rows: header + row(2, "<c><v>1</v></c>") }))),
      422,
      "WORKBOOK_INVALID",
      /16,384 columns; with 0 result columns and the error column the output would need 16,385, over Excel's limit of 16,384 columns/,
    );
  });

  it("a row of more than 16,384 cells (written without references) is 422", async () => {
    const header = row(1, Array.from({ length: 16_385 }, (_, k) => inline(`c${k}`)).join(""));
    await expectRefused(
      await post(xlsxFile(xlsx({ rows: header + row(2, "<c><v>1</v></c>") }))),
      422,
      "WORKBOOK_INVALID",
      /is beyond Excel's last column \(XFD\)/,
    );
  });

  it("too many columns once the spec's result columns are added is 422", async () => {
    const header = row(1, Array.from({ length: 16_381 }, (_, k) => inline(`c${k}`)).join(""));
    const spec = {
      name: "wide",
      task: {
        name: "http-enrich",
        options: { url: "https://registry.example/{c0}", results: { r1: "a", r2: "b", r3: "c" } },
      },
    };
    await expectRefused(
      await post(xlsxFile(xlsx({ rows: header + row(2, "<c><v>1</v></c>") })), spec),
      422,
      "WORKBOOK_INVALID",
      /16,381 columns; with 3 result columns and the error column the output would need 16,385/,
    );
  });

  it("too many rows (by the sheet's dimension) is 413, naming SHARDFLEET_MAX_ROWS", async () => {
    await expectRefused(
      await post(xlsxFile(xlsx({ rows: HEADER + DATA, dimension: "A1:B5000" }))),
      413,
      "PAYLOAD_TOO_LARGE",
      /more than 1,000 data rows, the limit \(SHARDFLEET_MAX_ROWS\)/,
    );
  });

  it("an oversized cell is 422, naming Excel's cell limit (data row and header)", async () => {
    const long = "z".repeat(40_000);
    await expectRefused(
      await post(xlsxFile(xlsx({ rows: HEADER + row(2, inline("1", "A2") + inline(long, "B2")) }))),
      422,
      "WORKBOOK_INVALID",
      /cell B2 has more than 32,767 characters, Excel's limit for a cell$/,
    );
    await expectRefused(
      await post(csvFile(`id,${long}\n1,2\n`)),
      422,
      "WORKBOOK_INVALID",
      /header in column B has more than 32,767 characters/,
    );
  });

  it("a blank first row is 422: the header must be row 1 (xlsx and csv)", async () => {
    const rows = row(3, inline("id", "A3")) + row(4, '<c r="A4"><v>1</v></c>');
    await expectRefused(
      await post(xlsxFile(xlsx({ rows }))),
      422,
      "WORKBOOK_INVALID",
      /the header row must be row 1, but rows 1-2 are empty/,
    );
    await expectRefused(
      await post(csvFile("\nid,name\n1,ada\n")),
      422,
      "WORKBOOK_INVALID",
      /the header row must be row 1, but row 1 is empty/,
    );
  });

  it("a ragged CSV (a data row wider than the header) is 422, naming the cell", async () => {
    await expectRefused(
      await post(csvFile("id;name\n1;a;1,5\n")),
      422,
      "WORKBOOK_INVALID",
      /row 2 has a value beyond the header's last column \(A\): B2$/,
    );
  });

  it("a formula without a cached value is 422, naming the cell", async () => {
    const rows = HEADER + row(2, '<c r="A2"><v>1</v></c><c r="B2"><f>A2&amp;"x"</f></c>');
    await expectRefused(
      await post(xlsxFile(xlsx({ rows }))),
      422,
      "WORKBOOK_INVALID",
      /cell B2 holds a formula with no calculated value \(=A2&"x"\)/,
    );
  });

  it("XML entities (an entity bomb, an external entity) are never expanded: 422", async () => {
    const entities =
      '<!DOCTYPE w [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY x SYSTEM "file:///etc/passwd">]>';
    const entries = handmadeEntries({
      sheets: [{ name: "Data", rows: HEADER + row(2, `${inline("&b;&x;", "A2")}`) }],
    }).map((e) =>
      e.name === "xl/worksheets/sheet1.xml"
        ? { ...e, data: e.data.replace("?><worksheet", `?>${entities}<worksheet`) }
        : e,
    );
    expect(entries.some((e) => e.data.includes("<!ENTITY x SYSTEM"))).toBe(true);
    await expectRefused(
      await post(xlsxFile(zipOf(entries))),
      422,
      "WORKBOOK_INVALID",
      /file is not a readable xlsx workbook/,
    );
  });

  it("a sheet citing a shared string that does not exist is 422", async () => {
    const rows = HEADER + row(2, '<c r="A2" t="s"><v>7</v></c>');
    await expectRefused(
      await post(xlsxFile(xlsx({ rows }))),
      422,
      "WORKBOOK_INVALID",
      /file is not a readable xlsx workbook/,
    );
  });

  it("an empty workbook, and one with a header but no data, are 422", async () => {
    await expectRefused(
      await post(xlsxFile(xlsx({ rows: "" }))),
      422,
      "WORKBOOK_INVALID",
      /workbook is empty/,
    );
    await expectRefused(await post(csvFile("")), 422, "WORKBOOK_INVALID", /workbook is empty/);
    await expectRefused(
      await post(xlsxFile(xlsx({ rows: HEADER }))),
      422,
      "WORKBOOK_INVALID",
      /workbook has a header row but no data rows/,
    );
  });
});
