import { readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { PassThrough, Readable } from "node:stream";
import { describe, expect, it, vi } from "vitest";
import {
  addCellKindsRow,
  CELL_KINDS,
  collect,
  handmadeXlsx,
  readStreamRows,
  readStreamWorkbookRows,
  simpleXlsx,
  storedZip,
  streamOf,
  xlsxBuffer,
} from "../../../test/support/workbooks.ts";
import { BadInputError } from "../../shared/errors.ts";

const utc = (y: number, m: number, d: number, h = 0, min = 0) =>
  new Date(Date.UTC(y, m - 1, d, h, min));

function xlsxRows(data: Buffer, sheet?: string) {
  return collect(readStreamRows(streamOf(data), { format: "xlsx", sheet }));
}

/** CSV as the reader gives it with `csvValues: "text"` (typing has tests of its own). */
function csvRows(text: string | Buffer) {
  return collect(readStreamRows(streamOf(text), { format: "csv", csvValues: "text" }));
}

/** Temporary files this process spooled (a stream's compressed bytes) and has not deleted. */
function ourTempFiles(): string[] {
  return readdirSync(tmpdir()).filter((f) => f.startsWith(`tmp-${process.pid}-`));
}

async function expectWorkbookInvalid(promise: Promise<unknown>, message: string | RegExp) {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BadInputError);
  expect((err as BadInputError).code).toBe("WORKBOOK_INVALID");
  expect((err as BadInputError).message).toMatch(message);
}

describe("readRows (xlsx)", () => {
  it("keeps each cell's meaning: numbers, dates, formulas, rich text, links, errors, booleans", async () => {
    const headers = CELL_KINDS;
    const data = await xlsxBuffer((wb) => {
      const ws = wb.addWorksheet("Data");
      ws.addRow(headers);
      addCellKindsRow(ws, 2, { text: "a", number: 1.5, bool: false });
    });
    const rows = await xlsxRows(data);
    expect(rows).toEqual([
      headers,
      [
        "a",
        1.5,
        utc(2024, 1, 2, 13, 30),
        3,
        "rich",
        "the site",
        "#N/A",
        false,
        utc(2024, 1, 3, 13, 30),
        "#N/A",
        true,
      ],
    ]);
  });

  it("pads sparse rows so cell k is column k, with null for empty cells", async () => {
    const data = await xlsxBuffer((wb) => {
      const ws = wb.addWorksheet("S");
      ws.addRow(["a", "b", "c", "d"]);
      ws.getCell("A2").value = 1;
      ws.getCell("D2").value = 4; // B2, C2 empty
      ws.getCell("C3").value = "only c";
      ws.getCell("B5").value = "after a blank row";
    });
    expect(await xlsxRows(data)).toEqual([
      ["a", "b", "c", "d"],
      [1, null, null, 4],
      [null, null, "only c"],
      [null, "after a blank row"],
    ]);
  });

  it("skips rows with no values, including leading ones, so the first row is the header", async () => {
    const data = await xlsxBuffer((wb) => {
      const ws = wb.addWorksheet("S");
      ws.getCell("A3").value = "h1";
      ws.getCell("B3").value = "h2";
      ws.getCell("A4").value = "";
      ws.getCell("A5").value = "x";
    });
    expect(await xlsxRows(data)).toEqual([["h1", "h2"], ["x"]]);
  });

  it("reads the first sheet in workbook order by default, a named sheet when asked", async () => {
    const data = await xlsxBuffer((wb) => {
      wb.addWorksheet("First").addRow(["one"]);
      wb.addWorksheet("Second").addRow(["two"]);
    });
    expect(await xlsxRows(data)).toEqual([["one"]]);
    expect(await xlsxRows(data, "Second")).toEqual([["two"]]);
  });

  it("skips hidden sheets when choosing the default sheet", async () => {
    const data = handmadeXlsx({
      sheets: [
        { name: "Lookup", state: "hidden", rows: '<row r="1"><c r="A1"><v>1</v></c></row>' },
        { name: "Data", rows: '<row r="1"><c r="A1"><v>2</v></c></row>' },
      ],
    });
    expect(await xlsxRows(data)).toEqual([[2]]);
    expect(await xlsxRows(data, "Lookup")).toEqual([[1]]);
  });

  it("names the missing sheet and lists the ones that exist", async () => {
    const data = await xlsxBuffer((wb) => {
      wb.addWorksheet("Alpha").addRow(["a"]);
      wb.addWorksheet("Beta").addRow(["b"]);
    });
    await expectWorkbookInvalid(
      xlsxRows(data, "Gamma"),
      'sheet "Gamma" not found (sheets: "Alpha", "Beta")',
    );
  });

  it("leaves no spooled temporary file behind, also when the reader stops after one row", async () => {
    const data = await xlsxBuffer((wb) => {
      wb.addWorksheet("A").addRows([["h"], [1], [2]]);
      wb.addWorksheet("B").addRows([["h"], [1]]);
      wb.addWorksheet("C").addRows([["h"], [1]]);
    });
    const before = ourTempFiles().length;
    let whileReading = 0;
    for await (const _row of readStreamRows(streamOf(data), { format: "xlsx", sheet: "B" })) {
      whileReading = ourTempFiles().length;
      break;
    }
    expect(whileReading).toBeGreaterThan(before); // the stream was spooled: the check below means something
    expect(await xlsxRows(data)).toHaveLength(3);
    await vi.waitFor(() => expect(ourTempFiles()).toHaveLength(before), { timeout: 2000 });
  });

  it("removes the spooled copy of a stream on every path: corrupt tail, failing stream, abort", async () => {
    const good = await simpleXlsx([["h"], ...Array.from({ length: 2000 }, (_, k) => [k])]);
    const before = ourTempFiles().length;
    const corruptTail = Buffer.from(good);
    corruptTail.fill(0x41, corruptTail.length - 60);
    await expectWorkbookInvalid(xlsxRows(corruptTail), "file is not a readable xlsx workbook");
    expect(ourTempFiles()).toHaveLength(before);

    const failing = new PassThrough();
    failing.write(good.subarray(0, 4000));
    setImmediate(() => failing.destroy(new Error("connection reset")));
    await expect(collect(readStreamRows(failing, { format: "xlsx" }))).rejects.toThrow(
      "connection reset",
    );
    expect(ourTempFiles()).toHaveLength(before);

    const controller = new AbortController();
    const rows = readStreamRows(streamOf(good), { format: "xlsx", signal: controller.signal });
    await rows.next();
    expect(ourTempFiles().length).toBeGreaterThan(before); // spooled while reading
    controller.abort(new Error("stop now"));
    await expect(rows.next()).rejects.toThrow("stop now");
    expect(ourTempFiles()).toHaveLength(before);
  });

  it("gives a row's notes and number: a formula with no cached value is null and named", async () => {
    const data = handmadeXlsx({
      sheets: [
        {
          name: "F",
          rows:
            '<row r="1"><c r="A1" t="inlineStr"><is><t>a</t></is></c></row>' +
            '<row r="4"><c r="A4"><f t="shared" si="0"/></c></row>',
        },
      ],
    });
    expect(await collect(readStreamWorkbookRows(streamOf(data), { format: "xlsx" }))).toEqual([
      { n: 1, cells: ["a"], notes: [] },
      {
        n: 4,
        cells: [null],
        notes: [
          "cell A4 holds a formula with no calculated value: open and save the workbook in Excel or LibreOffice so its values are calculated",
        ],
      },
    ]);
  });

  it("reads inline strings (all runs, no phonetic text), t=d dates, prefixed elements and refs without r", async () => {
    const data = handmadeXlsx({
      sheets: [
        {
          name: "Hand",
          rows:
            '<row r="1"><c r="A1" t="inlineStr"><is><t>h</t></is></c><c r="B1" t="inlineStr"><is><t>i</t></is></c><c t="inlineStr"><is><t>j</t></is></c></row>' +
            '<row r="2"><c r="A2" t="inlineStr"><is><r><t>one </t></r><r><t>two</t></r><rPh><t>ふり</t></rPh></is></c>' +
            '<c r="B2" t="d"><v>2024-03-04T05:06:07Z</v></c><c t="str"><f>A1</f><v>a &amp; b</v></c></row>',
        },
      ],
    });
    expect(await xlsxRows(data)).toEqual([
      ["h", "i", "j"],
      ["one two", new Date("2024-03-04T05:06:07Z"), "a & b"],
    ]);
    const prefixed = handmadeXlsx({
      sheets: [
        {
          name: "P",
          rows: '<x:row r="1"><x:c r="B1" t="inlineStr"><x:is><x:t>p</x:t></x:is></x:c><x:c r="C1"><x:v>2</x:v></x:c></x:row>',
        },
      ],
    });
    expect(await xlsxRows(prefixed)).toEqual([[null, "p", 2]]);
  });

  it("resolves sheet names through absolute relationship targets (openpyxl writes them)", async () => {
    const data = handmadeXlsx({
      absoluteTargets: true,
      sharedStrings: ["<t>from shared</t>", "<r><t>rich </t></r><r><t>shared</t></r>"],
      sheets: [
        { name: "Cover", rows: '<row r="1"><c r="A1" t="s"><v>0</v></c></row>' },
        { name: "Data", rows: '<row r="1"><c r="A1" t="s"><v>1</v></c></row>' },
      ],
    });
    expect(await xlsxRows(data)).toEqual([["from shared"]]);
    expect(await xlsxRows(data, "Data")).toEqual([["rich shared"]]);
  });

  it("applies date formats from styles (custom and built-in) and the 1904 date system", async () => {
    const rows =
      '<row r="1"><c r="A1" s="1"><v>45293</v></c><c r="B1" s="2"><v>45293.5</v></c><c r="C1" s="3"><v>45293</v></c><c r="D1"><v>45293</v></c></row>';
    const styles = { numFmts: { 164: "d/m/yy;@", 165: '0.0" days"' }, xfs: [0, 164, 22, 165] };
    const data = handmadeXlsx({ sheets: [{ name: "D", rows }], ...styles });
    expect(await xlsxRows(data)).toEqual([[utc(2024, 1, 2), utc(2024, 1, 2, 12), 45293, 45293]]);
    const data1904 = handmadeXlsx({ sheets: [{ name: "D", rows }], ...styles, date1904: true });
    expect((await xlsxRows(data1904))[0]?.[0]).toEqual(utc(2028, 1, 3));
  });

  it("reads the shared strings before the sheet whatever the entry order (sheet first or last)", async () => {
    // Excel and exceljs write the sheet before the shared strings; the reader goes through the
    // central directory, so both orders read the same without spooling the sheet.
    const sheets = [
      { name: "S", rows: '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1"><v>7</v></c></row>' },
    ];
    const direct = handmadeXlsx({ sheets, sharedStrings: ["<t>x</t>"], partsFirst: true });
    const spooled = handmadeXlsx({ sheets, sharedStrings: ["<t>x</t>"], partsFirst: false });
    expect(await xlsxRows(direct)).toEqual([["x", 7]]);
    expect(await xlsxRows(spooled)).toEqual([["x", 7]]);
  });

  it("refuses a file that is not an xlsx workbook: text, empty, truncated, a zip of something else", async () => {
    const good = await simpleXlsx([["a"], [1]]);
    await expectWorkbookInvalid(
      xlsxRows(Buffer.from("name,age\nann,3\n")),
      "file is not a readable xlsx workbook",
    );
    await expectWorkbookInvalid(xlsxRows(Buffer.alloc(0)), "file is not a readable xlsx workbook");
    await expectWorkbookInvalid(
      xlsxRows(good.subarray(0, Math.floor(good.length / 2))),
      "file is not a readable xlsx workbook",
    );
    await expectWorkbookInvalid(
      xlsxRows(storedZip([{ name: "notes.txt", data: "hello" }])),
      "file is not a readable xlsx workbook",
    );
  });

  it("never hangs on a corrupted workbook: every damaged copy ends in rows or a WORKBOOK_INVALID", async () => {
    const good = await simpleXlsx([
      ["name", "n"],
      ...Array.from({ length: 200 }, (_, k) => [`row ${k}`, k]),
    ]);
    for (let offset = 0; offset < good.length; offset += Math.ceil(good.length / 40)) {
      const bad = Buffer.from(good);
      bad.fill(0x41, offset, offset + 64);
      const outcome = await xlsxRows(bad).then(
        () => "rows",
        (err: unknown) => (err instanceof BadInputError ? err.code : String(err)),
      );
      expect(["rows", "WORKBOOK_INVALID"]).toContain(outcome);
    }
  });

  it("stops with the input's error when the stream fails midway, and on abort", async () => {
    const good = await simpleXlsx([["a"], [1]]);
    const failing = new PassThrough();
    failing.write(good.subarray(0, 100));
    setImmediate(() => failing.destroy(new Error("connection reset")));
    await expect(collect(readStreamRows(failing, { format: "xlsx" }))).rejects.toThrow(
      "connection reset",
    );

    const stalled = new PassThrough();
    stalled.write(good.subarray(0, 100));
    const controller = new AbortController();
    setImmediate(() => controller.abort(new Error("stop now")));
    await expect(
      collect(readStreamRows(stalled, { format: "xlsx", signal: controller.signal })),
    ).rejects.toThrow("stop now");
    expect(stalled.destroyed).toBe(true);
  });
});

describe("readRows (csv)", () => {
  it("parses quotes, embedded commas, quotes and newlines, CRLF and a BOM; values stay strings", async () => {
    const text = '\uFEFFname,note,n\r\n"Smith, Ann","said ""hi""\r\nthen left",42\r\nBob,,007\r\n';
    expect(await csvRows(text)).toEqual([
      ["name", "note", "n"],
      ["Smith, Ann", 'said "hi"\r\nthen left', "42"],
      ["Bob", null, "007"],
    ]);
  });

  it("drops a BOM split across chunks and skips blank lines", async () => {
    const bytes = Buffer.from("\uFEFFa,b\n\n,\n1,2\n");
    const input = Readable.from([bytes.subarray(0, 1), bytes.subarray(1, 2), bytes.subarray(2)]);
    expect(await collect(readStreamRows(input, { format: "csv", csvValues: "text" }))).toEqual([
      ["a", "b"],
      ["1", "2"],
    ]);
  });

  it("keeps ragged rows as they are (the splitter fits them to the header)", async () => {
    expect(await csvRows("a,b,c\n1\n1,2,3,4\n")).toEqual([
      ["a", "b", "c"],
      ["1"],
      ["1", "2", "3", "4"],
    ]);
  });

  it("types cells like xlsx by default: numbers that round-trip are numbers, the rest stays text", async () => {
    const text = "id,n,x,big,neg,exp,z\n007,42,1.50,12345678901234567890,-3.25,1e3,-0\n";
    expect(await collect(readStreamRows(streamOf(text), { format: "csv" }))).toEqual([
      ["id", "n", "x", "big", "neg", "exp", "z"],
      ["007", 42, "1.50", "12345678901234567890", -3.25, "1e3", "-0"],
    ]);
  });

  it("refuses an unclosed quote with WORKBOOK_INVALID", async () => {
    await expectWorkbookInvalid(csvRows('a,b\n"open,1\n'), /^file is not readable csv/);
  });

  it("destroys the input when the caller stops early", async () => {
    const input = new PassThrough();
    input.write("a,b\n1,2\n3,4\n");
    for await (const _row of readStreamRows(input, { format: "csv" })) break;
    expect(input.destroyed).toBe(true);
  });
});
