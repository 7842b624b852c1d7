import { Readable } from "node:stream";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { feedRowXml } from "./row-xml.ts";
import { saxBatches } from "./sax.ts";
import { type SheetContext, type SheetRow, SheetRowReader, sheetRows } from "./sheet-xml.ts";

const ctx: SheetContext = {
  sharedString: (k) => ["zero", "one & two", " padded "][k] ?? null,
  isDateStyle: (s) => s === 1,
  date1904: false,
};

/** What saxes (the reference) reads from a slice document, or the error it throws. */
async function reference(xml: string): Promise<SheetRow[] | Error> {
  const out: SheetRow[] = [];
  try {
    for await (const row of sheetRows(saxBatches(Readable.from([xml])), ctx, { afterRow: 0 })) {
      out.push(row);
    }
    return out;
  } catch (err) {
    return err as Error;
  }
}

function fast(xml: string): SheetRow[] | undefined {
  const reader = new SheetRowReader(ctx, { afterRow: 0 });
  return feedRowXml(xml, reader) ? reader.rows : undefined;
}

const doc = (rows: string) => `<slice>${rows}</slice>`;

/** Cell XML the producers write (p: a namespace prefix), and some they could. */
const cell = (p: string) =>
  fc.oneof(
    fc.integer({ min: -5, max: 5000 }).map((n) => `<${p}c r="B3"><${p}v>${n}</${p}v></${p}c>`),
    fc.constantFrom(
      `<${p}c r="A1" t="s"><${p}v>1</${p}v></${p}c>`,
      `<${p}c r="C1" s="1"><${p}v>45000.5</${p}v></${p}c>`,
      `<${p}c t="inlineStr"><${p}is><${p}t xml:space="preserve"> a &lt;b&gt; &amp; &quot;c&quot; &apos;d&apos; </${p}t></${p}is></${p}c>`,
      `<${p}c t="inlineStr"><${p}is><${p}r><${p}rPr><${p}b/></${p}rPr><${p}t>rich</${p}t></${p}r><${p}r><${p}t> text</${p}t></${p}r><${p}rPh sb="0" eb="1"><${p}t>ふり</${p}t></${p}rPh></${p}is></${p}c>`,
      `<${p}c r="D1" t="str"><${p}f>A1&amp;"x"</${p}f><${p}v>1x</${p}v></${p}c>`,
      `<${p}c r="E1"><${p}f>SUM(A1:A3)</${p}f></${p}c>`,
      `<${p}c r="F1" t="b"><${p}v>1</${p}v></${p}c>`,
      `<${p}c r="G1" t="e"><${p}v>#N/A</${p}v></${p}c>`,
      `<${p}c r="H1" t="d"><${p}v>2024-02-29T12:00:00Z</${p}v></${p}c>`,
      `<${p}c r='I1' s = '1' ><${p}v >7</${p}v ></${p}c>`,
      `<${p}c r="J1"/>`,
      `<${p}c r="K1"><${p}v/></${p}c>`,
      `<${p}c r="L1" t="inlineStr"><${p}is><${p}t>line&#10;two &#x1F600; tab\t</${p}t></${p}is></${p}c>`,
      `<${p}c r="M1"><${p}v>  </${p}v></${p}c>`,
      `<${p}c r="A1"><${p}v>1</${p}v></${p}c>`,
      `<${p}c><${p}v>2</${p}v></${p}c>`,
      `<${p}c r="N1" t="inlineStr"><${p}is><${p}t>é ünïcødé 中文</${p}t></${p}is></${p}c>`,
      `<${p}c r="O1" x14ac:dyDescent="0.25"><${p}extLst><${p}ext uri="{x}"/></${p}extLst><${p}v>3</${p}v></${p}c>`,
    ),
  );

/** Fragments outside the fast path's subset, or not XML at all: it must give up on them. */
const odd = fc.constantFrom(
  "<!-- a comment -->",
  "<c><v><![CDATA[1<2]]></v></c>",
  "<?pi x?>",
  "<c><v>1\r\n</v></c>",
  "<c><v>&nbsp;</v></c>",
  "<c><v>a & b</v></c>",
  "<c><v>1</c></v>",
  "<c r=A1><v>1</v></c>",
  '<c r="A1" r="A2"><v>1</v></c>',
  '<c r="a\tb"><v>1</v></c>',
  "<c><v>\u0001</v></c>",
  "<c><v>]]></v></c>",
  "<c><v>&#0;</v></c>",
  "<1c/>",
  "<c",
  '<c r="A1><v>1</v></c>',
);

const row = (p: string, cells: string[], r?: number) =>
  `<${p}row${r === undefined ? "" : ` r="${r}"`} spans="1:4">${cells.join("")}</${p}row>`;

describe("feedRowXml (the slice's fast tokenizer)", () => {
  it("reads what saxes reads, row for row, cell for cell", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("", "x:"),
        fc.array(
          fc.tuple(fc.array(cell(""), { maxLength: 5 }), fc.option(fc.integer({ min: 1, max: 9 }))),
          { maxLength: 6 },
        ),
        fc.constantFrom("", "\n", "  \n\t"),
        async (p, rows, gap) => {
          const xml = doc(
            rows
              .map(([cells, r]) =>
                row(
                  p,
                  cells.map((c) => (p ? c.replaceAll("<c", "<x:c").replaceAll("</c", "</x:c") : c)),
                  r ?? undefined,
                ),
              )
              .join(gap),
          );
          const expected = await reference(xml);
          expect(expected).not.toBeInstanceOf(Error);
          expect(fast(xml)).toEqual(expected);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("gives up on what it does not read, never reading it differently from saxes", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(cell(""), { maxLength: 3 }),
        odd,
        fc.array(cell(""), { maxLength: 3 }),
        async (before, strange, after) => {
          const xml = doc(row("", [...before, strange, ...after], 2));
          const expected = await reference(xml);
          const got = fast(xml);
          // Either it gave up (the caller then uses saxes), or it read exactly what saxes did.
          if (got !== undefined) expect(got).toEqual(expected);
          if (expected instanceof Error) expect(got).toBeUndefined();
        },
      ),
      { numRuns: 200 },
    );
  });

  it("reads empty and self-closing rows, and rows numbered on from the last", () => {
    expect(fast(doc('<row r="4"/><row><c><v>1</v></c></row><row r="2"></row>'))).toEqual([
      { n: 4, cells: [], notes: [] },
      { n: 5, cells: [1], notes: [] },
      { n: 6, cells: [], notes: [] },
    ]);
  });

  it("gives up on a document that does not close its root, or has more than one", () => {
    expect(fast("<slice><row/>")).toBeUndefined();
    expect(fast("<slice/><slice/>")).toBeUndefined();
    expect(fast("text<slice/>")).toBeUndefined();
  });
});
