import { Readable } from "node:stream";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isEmptyRow } from "../../shared/workbook/row-shape.ts";
import { saxBatches } from "../../shared/workbook/sax.ts";
import { type SheetContext, type SheetRow, sheetRows } from "../../shared/workbook/sheet-xml.ts";
import { cutSheet, type SheetPiece, sliceDocument } from "./sheet-slicer.ts";

const ctx: SheetContext = {
  sharedString: (k) => ["zero", "one", "two"][k] ?? null,
  isDateStyle: (s) => s === 1,
  date1904: false,
};

/** The data rows the one-pass reader yields (read-rows.ts skips rows with nothing in them). */
async function readWhole(xml: string): Promise<SheetRow[]> {
  const out: SheetRow[] = [];
  for await (const row of sheetRows(saxBatches(Readable.from([Buffer.from(xml)])), ctx)) {
    if (!isEmptyRow(row.cells) || row.notes.length > 0) out.push(row);
  }
  return out;
}

/** Cuts `xml` delivered in the given chunks; returns the pieces and the rows workers parse. */
async function cut(chunks: Buffer[], rowsPerSlice: number) {
  const pieces: SheetPiece[] = [];
  for await (const piece of cutSheet(Readable.from(chunks), { rowsPerSlice })) pieces.push(piece);
  const parse = async (doc: Buffer) => {
    const out: SheetRow[] = [];
    for await (const row of sheetRows(saxBatches(Readable.from([doc])), ctx, { afterRow: 0 })) {
      out.push(row);
    }
    return out;
  };
  const rows: SheetRow[] = [];
  const slices: number[] = [];
  for (const piece of pieces) {
    if (piece.kind === "header") rows.push(...(await parse(sliceDocument([piece.xml]))));
    if (piece.kind === "slice") {
      const got = await parse(sliceDocument(piece.parts));
      expect(got).toHaveLength(piece.rows);
      slices.push(piece.rows);
      rows.push(...got);
    }
  }
  return { pieces, rows, slices };
}

function splitAt(bytes: Buffer, points: number[]): Buffer[] {
  const cuts = [...new Set(points.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const at of cuts) {
    out.push(bytes.subarray(from, at));
    from = at;
  }
  out.push(bytes.subarray(from));
  return out.filter((b) => b.length > 0);
}

/** Row shapes the scan must treat like the reader does (p: the namespace prefix). */
const rowKinds = (p: string) =>
  [
    (r: number) => `<${p}row r="${r}"><${p}c r="A${r}"><${p}v>${r}</${p}v></${p}c></${p}row>`,
    // No r on the row (or its cells): numbered by position, even after skipped rows.
    (_r: number) =>
      `<${p}row><${p}c t="s"><${p}v>1</${p}v></${p}c><${p}c><${p}v>2.5</${p}v></${p}c></${p}row>`,
    // Styled empty cells and a self-closing row: no data.
    (r: number) =>
      `<${p}row r="${r}" spans="1:3"><${p}c r="A${r}" s="1"/><${p}c r="B${r}" s="2"/></${p}row>`,
    (r: number) => `<${p}row r="${r}"/>`,
    // A formula without a cached value: kept with a note naming the cell.
    (r: number) => `<${p}row r="${r}"><${p}c r="C${r}"><${p}f>A${r}*2</${p}f></${p}c></${p}row>`,
    // Inline rich text, a date style, a comment and CDATA holding "</row>".
    (r: number) =>
      `<${p}row r="${r}"><!-- </${p}row> --><${p}c r="A${r}" t="inlineStr"><${p}is><${p}r><${p}t>a</${p}t></${p}r><${p}r><${p}t><![CDATA[</${p}row>]]></${p}t></${p}r></${p}is></${p}c><${p}c r="B${r}" s="1"><${p}v>45000</${p}v></${p}c></${p}row>`,
    // A row number that goes backwards: the reader numbers it after the row before.
    (_r: number) => `<${p}row r="1"><${p}c r="B1" t="b"><${p}v>1</${p}v></${p}c></${p}row>`,
  ] as const;

function sheetXml(p: string, kinds: number[]): string {
  const make = rowKinds(p);
  const rows = kinds.map((k, n) => make[k % make.length]!(n + 2)).join("");
  const ns = p
    ? ` xmlns:${p.slice(0, -1)}="http://schemas.openxmlformats.org/spreadsheetml/2006/main"`
    : "";
  return (
    `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<${p}worksheet${ns}>` +
    `<${p}dimension ref="A1:C${kinds.length + 1}"/><${p}sheetData>` +
    `<${p}row r="1"><${p}c r="A1" t="s"><${p}v>0</${p}v></${p}c></${p}row>${rows}` +
    `</${p}sheetData><${p}mergeCells count="0"/></${p}worksheet>`
  );
}

describe("cutSheet", () => {
  it("gives workers exactly the rows, numbers, cells and notes the one-pass reader gives, however the bytes are chunked", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("", "x:"),
        fc.array(fc.nat(6), { maxLength: 30 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        fc.integer({ min: 1, max: 4 }),
        async (prefix, kinds, points, rowsPerSlice) => {
          const xml = sheetXml(prefix, kinds);
          const whole = await readWhole(xml);
          const { pieces, rows, slices } = await cut(
            splitAt(Buffer.from(xml), points),
            rowsPerSlice,
          );
          expect(rows).toEqual(whole);
          expect(pieces[0]).toEqual({ kind: "dimension", ref: `A1:C${kinds.length + 1}` });
          // Full slices, then one shorter one at most.
          const data = whole.length - 1;
          expect(slices.reduce((a, b) => a + b, 0)).toBe(data);
          expect(slices.slice(0, -1).every((n) => n === rowsPerSlice)).toBe(true);
        },
      ),
      { numRuns: 150 },
    );
  });

  it("resumed at any slice's mark, however chunked, yields exactly the slices that came after it", async () => {
    type Slice = Extract<SheetPiece, { kind: "slice" }>;
    const slicesOf = async (chunks: Buffer[], rowsPerSlice: number, resume?: Slice["mark"]) => {
      const out: Array<{ bytes: string; rows: number; mark: Slice["mark"] }> = [];
      const pieces = cutSheet(Readable.from(chunks), {
        rowsPerSlice,
        ...(resume ? { resume } : {}),
      });
      for await (const piece of pieces) {
        // A resumed scan yields neither the dimension nor the header again.
        if (resume) expect(piece.kind).toBe("slice");
        if (piece.kind === "slice") {
          out.push({
            bytes: sliceDocument(piece.parts).toString(),
            rows: piece.rows,
            mark: piece.mark,
          });
        }
      }
      return out;
    };
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("", "x:"),
        fc.array(fc.nat(6), { maxLength: 30 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        fc.integer({ min: 1, max: 4 }),
        async (prefix, kinds, points, otherPoints, rowsPerSlice) => {
          const xml = Buffer.from(sheetXml(prefix, kinds));
          const whole = await slicesOf(splitAt(xml, points), rowsPerSlice);
          for (const [k, slice] of whole.entries()) {
            const rest = await slicesOf(splitAt(xml, otherPoints), rowsPerSlice, slice.mark);
            expect(rest).toEqual(whole.slice(k + 1));
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  it("stops at </sheetData> and yields nothing for a sheet without rows", async () => {
    const after = `<worksheet><sheetData><row r="1"><c><v>1</v></c></row></sheetData><extLst><row r="9"><c><v>9</v></c></row></extLst></worksheet>`;
    expect((await cut([Buffer.from(after)], 10)).rows.map((r) => r.n)).toEqual([1]);
    const none = await cut([Buffer.from("<worksheet><sheetData/></worksheet>")], 10);
    expect(none.pieces).toEqual([]);
  });

  it("refuses a row that never closes", async () => {
    const broken = Buffer.from(`<worksheet><sheetData><row r="1"><c><v>1</v></c>`);
    await expect(cut([broken], 10)).rejects.toThrow(/ends inside a <row>/);
  });

  it("counts data rows through onRow (the row limit) and passes multi-byte text through unchanged", async () => {
    const seen: number[] = [];
    const xml = Buffer.from(
      `<worksheet><sheetData><row r="1"><c t="inlineStr"><is><t>h</t></is></c></row>` +
        `<row r="2"><c t="inlineStr"><is><t>naïve — 東京 😀</t></is></c></row>` +
        `<row r="3"><c><v>3</v></c></row></sheetData></worksheet>`,
    );
    const pieces: SheetPiece[] = [];
    for await (const piece of cutSheet(Readable.from(splitAt(xml, [70, 71, 72, 73, 74])), {
      rowsPerSlice: 5,
      onRow: (n) => seen.push(n),
    })) {
      pieces.push(piece);
    }
    expect(seen).toEqual([1, 2]);
    const slice = pieces.find((p) => p.kind === "slice");
    expect(slice?.kind === "slice" && Buffer.concat(slice.parts).toString()).toContain(
      "naïve — 東京 😀",
    );
  });
});
