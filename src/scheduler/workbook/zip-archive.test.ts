import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { collect, handmadeEntries, zipOf } from "../../../test/support/workbooks.ts";
import type { ByteSource } from "./byte-source.ts";
import { DEFAULT_WORKBOOK_LIMITS } from "./limits.ts";
import { readWorkbookRows } from "./read-rows.ts";

/** An in-memory source that counts reads, as each would be a ranged GET over S3. */
function countingSource(data: Buffer): ByteSource & { reads: number; closed: boolean } {
  return {
    size: data.length,
    reads: 0,
    closed: false,
    read(start, end) {
      this.reads++;
      return Readable.from([data.subarray(start, end)]);
    },
    async close() {
      this.closed = true;
    },
  };
}

describe("reading an xlsx by random access", () => {
  it("costs a handful of reads however many entries the zip has, and closes its source", async () => {
    const entries = [
      ...handmadeEntries({
        sheets: [{ name: "S", rows: '<row r="1"><c r="A1" t="s"><v>0</v></c></row>' }],
        sharedStrings: ["<t>h</t>"],
        partsFirst: false,
      }),
      ...Array.from({ length: 300 }, (_, k) => ({ name: `xl/media/image${k}.png`, data: "x" })),
    ];
    const source = countingSource(zipOf(entries));
    const rows = await collect(
      readWorkbookRows(source, { format: "xlsx", limits: DEFAULT_WORKBOOK_LIMITS }),
    );
    expect(rows).toEqual([{ n: 1, cells: ["h"], notes: [] }]);
    // End record, directory, then a local header and the data of each of the 4 parts read.
    expect(source.reads).toBeLessThanOrEqual(2 + 4 * 2);
    expect(source.closed).toBe(true);
  });
});
