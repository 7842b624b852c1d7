import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { columnIndex, columnLetter } from "./row-shape.ts";

describe("columnIndex", () => {
  it("reads a cell reference's column: `$` before it, any case, the row number after it", () => {
    expect(["A", "b7", "$C", "$aa10", "XFD1048576"].map(columnIndex)).toEqual([
      0, 1, 2, 26, 16_383,
    ]);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 16_383 }),
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 1, max: 1_048_576 }),
        (k, dollar, lower, row) => {
          const letters = lower ? columnLetter(k).toLowerCase() : columnLetter(k);
          return columnIndex(`${dollar ? "$" : ""}${letters}${row}`) === k;
        },
      ),
    );
  });

  it("is -1 for a reference that starts with no letter", () => {
    expect(["", "7", "$", "$7", "@1", "[1"].map(columnIndex)).toEqual([-1, -1, -1, -1, -1, -1]);
  });
});
