import { describe, expect, it } from "vitest";
import { columnRef, excelSerial, renderHeaderRow, renderRow, xmlText } from "./rows.ts";

describe("sheet rows", () => {
  it("names columns as Excel does", () => {
    expect([0, 25, 26, 51, 52, 701, 702, 16_383].map(columnRef)).toEqual([
      "A",
      "Z",
      "AA",
      "AZ",
      "BA",
      "ZZ",
      "AAA",
      "XFD",
    ]);
  });

  it("escapes markup, keeps carriage returns as references and drops what XML 1.0 cannot hold", () => {
    expect(xmlText("a<b>&c")).toBe("a&lt;b&gt;&amp;c");
    expect(xmlText("x\r\ny")).toBe("x&#13;\ny");
    expect(xmlText("bell\u0007 nul\u0000 del\u007f \uffff end")).toBe("bell nul del  end");
    expect(xmlText("plain")).toBe("plain");
  });

  it("writes each kind of cell, skips nulls, keeps spaces and numbers every cell", () => {
    expect(
      renderRow(7, [
        "t",
        null,
        1.25,
        true,
        new Date(Date.UTC(2024, 1, 3)),
        new Date(Date.UTC(2024, 1, 3, 12)),
        " pad",
        "x\ny",
        -0,
        Number.POSITIVE_INFINITY,
      ]),
    ).toBe(
      '<row r="7"><c r="A7" t="inlineStr"><is><t>t</t></is></c><c r="C7"><v>1.25</v></c>' +
        '<c r="D7" t="b"><v>1</v></c><c r="E7" s="1"><v>45325</v></c><c r="F7" s="2"><v>45325.5</v></c>' +
        '<c r="G7" t="inlineStr"><is><t xml:space="preserve"> pad</t></is></c>' +
        '<c r="H7" t="inlineStr"><is><t xml:space="preserve">x\ny</t></is></c><c r="I7"><v>0</v></c>' +
        '<c r="J7" t="inlineStr"><is><t>Infinity</t></is></c></row>',
    );
    expect(excelSerial(new Date(Date.UTC(1899, 11, 30)))).toBe(0);
  });

  it("writes the header row bold", () => {
    expect(renderHeaderRow(["a&b", "c"])).toBe(
      '<row r="1" s="3" customFormat="1"><c r="A1" s="3" t="inlineStr"><is><t>a&amp;b</t></is></c>' +
        '<c r="B1" s="3" t="inlineStr"><is><t>c</t></is></c></row>',
    );
  });
});
