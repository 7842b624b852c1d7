import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type Cell, canonicalCell, decodeCell, encodeCell, encodedCellSchema } from "./cells.ts";

describe("cell encoding", () => {
  it("round-trips every cell kind through JSON", () => {
    const cell = fc.oneof(
      fc.string(),
      fc.double({ noNaN: true, noDefaultInfinity: true }),
      fc.boolean(),
      fc.constant(null),
      fc.date({ noInvalidDate: true, min: new Date(0), max: new Date(Date.UTC(9999, 0, 1)) }),
    );
    fc.assert(
      fc.property(cell, (value: Cell) => {
        const wire = JSON.parse(JSON.stringify(encodeCell(value)));
        expect(encodedCellSchema.safeParse(wire).success).toBe(true);
        expect(decodeCell(wire)).toEqual(Object.is(value, -0) ? 0 : value);
      }),
    );
  });

  it("turns non-finite numbers into strings instead of JSON null", () => {
    expect(encodeCell(Number.POSITIVE_INFINITY)).toBe("Infinity");
  });

  it("sends negative zero as zero", () => {
    expect(Object.is(encodeCell(-0), 0)).toBe(true);
  });

  it("gives a cell the meaning a trip through JSON gives it, without the trip", () => {
    const cell = fc.oneof(
      fc.string(),
      fc.double(),
      fc.constantFrom(-0, Number.NaN, Number.POSITIVE_INFINITY),
      fc.boolean(),
      fc.constant(null),
      fc.date({ noInvalidDate: true, min: new Date(0), max: new Date(Date.UTC(9999, 0, 1)) }),
    );
    fc.assert(
      fc.property(cell, (value: Cell) => {
        const tripped = decodeCell(JSON.parse(JSON.stringify(encodeCell(value))));
        const canonical = canonicalCell(value);
        if (tripped instanceof Date) expect((canonical as Date).getTime()).toBe(tripped.getTime());
        else expect(Object.is(canonical, tripped)).toBe(true);
      }),
    );
  });
});
