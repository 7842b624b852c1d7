import { PassThrough, type Readable } from "node:stream";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { simpleXlsx, streamInput, streamOf, xlsxBuffer } from "../../../test/support/workbooks.ts";
import { BadInputError } from "../../shared/errors.ts";
import { columnIndex, columnLetter } from "../../shared/workbook/row-shape.ts";
import { type InspectOptions, inspectWorkbook, parseHeaderRow } from "./inspect.ts";

/** The header check of a stream (spooled for xlsx, as a caller holding a stream does). */
async function inspectStream(input: Readable, options: InspectOptions) {
  return inspectWorkbook(await streamInput(input, options), options);
}

async function refusal(promise: Promise<unknown>): Promise<BadInputError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BadInputError);
  expect((err as BadInputError).code).toBe("WORKBOOK_INVALID");
  return err as BadInputError;
}

const inspectXlsx = (data: Buffer, sheet?: string) =>
  inspectStream(streamOf(data), { format: "xlsx", sheet });
const inspectCsv = (text: string) => inspectStream(streamOf(text), { format: "csv" });

describe("inspectWorkbook", () => {
  it("returns trimmed headers; numbers and dates in their string form; trailing blanks ignored", async () => {
    const data = await xlsxBuffer((wb) => {
      const ws = wb.addWorksheet("S");
      ws.addRow(["  Name ", 2024, new Date(Date.UTC(2024, 0, 2)), true, null, ""]);
      ws.getCell("C1").numFmt = "yyyy-mm-dd";
      ws.addRow(["ann", 1, 2, 3]);
    });
    expect(await inspectXlsx(data)).toEqual({ headers: ["Name", "2024", "2024-01-02", "true"] });
    expect(await inspectCsv("a, b ,c,,\n1,2,3\n")).toEqual({ headers: ["a", "b", "c"] });
  });

  it("reads the named sheet and names an unknown one", async () => {
    const data = await xlsxBuffer((wb) => {
      wb.addWorksheet("One").addRows([["a"], [1]]);
      wb.addWorksheet("Two").addRows([["b"], [1]]);
    });
    expect(await inspectXlsx(data, "Two")).toEqual({ headers: ["b"] });
    const err = await refusal(inspectXlsx(data, "Three"));
    expect(err.message).toBe('sheet "Three" not found (sheets: "One", "Two")');
  });

  it("refuses a file that is not a readable xlsx workbook", async () => {
    const good = await simpleXlsx([["a"], [1]]);
    for (const bad of [Buffer.from("a,b\n1,2\n"), good.subarray(0, good.length - 100)]) {
      expect((await refusal(inspectXlsx(bad))).message).toBe(
        "file is not a readable xlsx workbook",
      );
    }
  });

  it("refuses an empty workbook", async () => {
    const data = await xlsxBuffer((wb) => {
      wb.addWorksheet("Empty");
    });
    expect((await refusal(inspectXlsx(data))).message).toBe("workbook is empty");
    expect((await refusal(inspectCsv(""))).message).toBe("workbook is empty");
    expect((await refusal(inspectCsv("\n,,\n\n"))).message).toBe("workbook is empty");
  });

  it("refuses a header row with no data rows", async () => {
    const data = await simpleXlsx([["a", "b"], [], [null, ""]]);
    expect((await refusal(inspectXlsx(data))).message).toBe(
      "workbook has a header row but no data rows",
    );
    expect((await refusal(inspectCsv("a,b\r\n"))).message).toBe(
      "workbook has a header row but no data rows",
    );
  });

  it("names the column of an empty header", async () => {
    const data = await simpleXlsx([
      ["a", "b", null, "d"],
      [1, 2, 3, 4],
    ]);
    const err = await refusal(inspectXlsx(data));
    expect(err.message).toBe("header in column C is empty");
    expect((await refusal(inspectCsv("a,  ,c\n1,2,3\n"))).message).toBe(
      "header in column B is empty",
    );
  });

  it("names both columns of a duplicate header", async () => {
    const data = await simpleXlsx([
      ["Id", "Name", "x", "y", " Name"],
      [1, 2, 3, 4, 5],
    ]);
    const err = await refusal(inspectXlsx(data));
    expect(err.message).toBe('duplicate header "Name" in columns B and E');
    expect(err.details).toEqual({ header: "Name", columns: ["B", "E"] });
  });

  it("stops after the first data row and destroys the stream (a stream that never ends)", async () => {
    const input = new PassThrough();
    input.write("a,b\n1,2\n3,4\n");
    // Never ended: inspect must not wait for the end of the file.
    expect(await inspectStream(input, { format: "csv" })).toEqual({ headers: ["a", "b"] });
    expect(input.destroyed).toBe(true);
  });

  it("destroys the stream when it refuses the file", async () => {
    const input = streamOf("a,a\n1,2\n");
    await refusal(inspectStream(input, { format: "csv" }));
    expect(input.destroyed).toBe(true);
  });
});

describe("parseHeaderRow", () => {
  it("accepts distinct names and keeps their order", () => {
    expect(parseHeaderRow(["b", "a", 3, null])).toEqual(["b", "a", "3"]);
  });
});

describe("column letters", () => {
  it("round-trip for every column Excel has", () => {
    expect([0, 25, 26, 701, 702, 16_383].map(columnLetter)).toEqual([
      "A",
      "Z",
      "AA",
      "ZZ",
      "AAA",
      "XFD",
    ]);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 16_383 }), (k) => columnIndex(columnLetter(k)) === k),
    );
  });
});
