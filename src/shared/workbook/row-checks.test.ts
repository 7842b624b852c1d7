import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { rowProblemList, rowProblems } from "./row-checks.ts";
import { EXCEL_MAX_CELL_CHARS } from "./row-shape.ts";

const LONG = "x".repeat(EXCEL_MAX_CELL_CHARS + 1);

describe("rowProblems", () => {
  it("says what rowProblemList finds, for any row (its quick look for none hides nothing)", () => {
    const cell = fc.constantFrom(null, "", "a", 7, LONG, "y".repeat(EXCEL_MAX_CELL_CHARS));
    fc.assert(
      fc.property(
        fc.array(cell, { maxLength: 6 }),
        fc.array(fc.constant("a formula with no value"), { maxLength: 1 }),
        fc.integer({ min: 1, max: 5 }),
        (cells, notes, width) => {
          const row = { n: 3, cells, notes };
          const listed = rowProblemList(row, width).map((p) => p.problem + p.kept);
          expect(rowProblems(row, width)).toEqual(listed);
        },
      ),
    );
  });
});
