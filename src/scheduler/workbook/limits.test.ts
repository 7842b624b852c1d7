import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../shared/config.ts";
import { BadInputError } from "../../shared/errors.ts";
import { cutLongCells, rowProblems } from "../../shared/workbook/row-checks.ts";
import { typeCsvCell } from "./csv-values.ts";
import {
  checkDeclaredPart,
  checkEntryCount,
  checkOutputWidth,
  checkRowCount,
  DEFAULT_WORKBOOK_LIMITS,
  knownResultColumns,
} from "./limits.ts";
import { resolvePart } from "./xlsx-parts.ts";
import { dimensionDataRows } from "./xlsx-rows.ts";

const MIB = 1024 * 1024;
const limits = DEFAULT_WORKBOOK_LIMITS;

function refusal(run: () => void): BadInputError {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(BadInputError);
    return err as BadInputError;
  }
  throw new Error("expected a refusal");
}

describe("workbook limits", () => {
  it("match the configuration's defaults", () => {
    expect(loadConfig({}).workbook).toEqual(DEFAULT_WORKBOOK_LIMITS);
  });

  it("refuse a declared size over the sheet or part limit, and a ratio only above the floor", () => {
    const sheet = {
      name: "xl/worksheets/sheet1.xml",
      compressedSize: 20 * MIB,
      uncompressedSize: 1025 * MIB,
    };
    const big = refusal(() => checkDeclaredPart(sheet, "sheet", limits));
    expect(big.code).toBe("PAYLOAD_TOO_LARGE");
    expect(big.details.limit).toBe("SHARDFLEET_MAX_INFLATED_MB");
    expect(() =>
      checkDeclaredPart({ ...sheet, uncompressedSize: 1024 * MIB }, "sheet", limits),
    ).not.toThrow();
    expect(
      refusal(() => checkDeclaredPart({ ...sheet, uncompressedSize: 257 * MIB }, "part", limits))
        .details.limit,
    ).toBe("SHARDFLEET_MAX_SHARED_STRINGS_MB");
    // 1 MiB of zeros compresses a thousand-fold and is still fine: the ratio needs volume.
    expect(() =>
      checkDeclaredPart(
        { name: "s", compressedSize: 1024, uncompressedSize: MIB },
        "sheet",
        limits,
      ),
    ).not.toThrow();
    const ratio = refusal(() =>
      checkDeclaredPart(
        { name: "s", compressedSize: 1024, uncompressedSize: 2 * MIB },
        "sheet",
        limits,
      ),
    );
    expect(ratio.details.limit).toBe("SHARDFLEET_MAX_COMPRESSION_RATIO");
    expect(ratio.message).toMatch(/inflates 2048-fold/);
  });

  it("refuse too many entries, rows, and columns once result columns and error are added", () => {
    expect(() => checkEntryCount(10_000, limits)).not.toThrow();
    expect(refusal(() => checkEntryCount(10_001, limits)).details.limit).toBe(
      "SHARDFLEET_MAX_ZIP_ENTRIES",
    );
    expect(() => checkRowCount(1_048_575, limits)).not.toThrow();
    expect(refusal(() => checkRowCount(1_048_576, limits)).message).toMatch(/Excel's last row/);
    expect(() => checkOutputWidth(16_381, 2)).not.toThrow();
    const wide = refusal(() => checkOutputWidth(16_381, 3));
    expect(wide.code).toBe("WORKBOOK_INVALID");
    expect(wide.message).toMatch(/would need 16,385, over Excel's limit of 16,384 columns \(XFD\)/);
  });

  it("count http-enrich's result columns; a transform's are unknown before it runs", () => {
    const http = { name: "http-enrich", options: { results: { a: "x", b: "y" } } } as never;
    expect(knownResultColumns(http)).toBe(2);
    expect(knownResultColumns({ name: "transform", options: { module: "m" } } as never)).toBe(0);
  });
});

describe("CSV typing", () => {
  it("makes a number of exactly the fields that round-trip", () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string(), fc.double().map(String), fc.integer().map(String)),
        (field) => {
          const typed = typeCsvCell(field);
          // A number only when its text is the field; otherwise the field, untouched.
          return typeof typed === "number" ? String(typed) === field : typed === field;
        },
      ),
    );
    expect(
      ["42", "-1.5", "0", "007", "1.50", "1e3", " 1", "NaN", "Infinity", "-0"].map(typeCsvCell),
    ).toEqual([42, -1.5, 0, "007", "1.50", "1e3", " 1", "NaN", "Infinity", "-0"]);
    expect(typeCsvCell(null)).toBeNull();
  });
});

describe("row checks", () => {
  it("name cells beyond the header and over-long text, and keep the reader's notes", () => {
    expect(rowProblems({ n: 7, cells: ["a", null, null, ""], notes: [] }, 2)).toEqual([]);
    expect(
      rowProblems({ n: 7, cells: ["a", "b", "c", null, "e", "f", "g"], notes: ["note"] }, 2),
    ).toEqual([
      "note",
      "row 7 has 4 values beyond the header's last column (B): C7, E7, F7, …, not processed",
    ]);
    const long = "x".repeat(32_768);
    expect(rowProblems({ n: 3, cells: [long], notes: [] }, 1)).toEqual([
      "cell A3 has more than 32,767 characters, Excel's limit for a cell: cut to 32,767",
    ]);
    expect(cutLongCells([long, 1, null])).toEqual(["x".repeat(32_767), 1, null]);
  });
});

describe("xlsx structure helpers", () => {
  it("resolve relationship targets, relative or absolute", () => {
    expect(resolvePart("xl/", "worksheets/sheet1.xml")).toBe("xl/worksheets/sheet1.xml");
    expect(resolvePart("xl/", "/xl/worksheets/sheet2.xml")).toBe("xl/worksheets/sheet2.xml");
    expect(resolvePart("xl/", "../xl/./worksheets/s.xml")).toBe("xl/worksheets/s.xml");
  });

  it("read the data rows a dimension promises", () => {
    expect(dimensionDataRows("A1:D500")).toBe(499);
    expect(dimensionDataRows("$A$1:$XFD$1048576")).toBe(1_048_575);
    expect(dimensionDataRows("A1")).toBe(0);
    expect(dimensionDataRows("junk")).toBeUndefined();
  });
});
