/**
 * CSV has no types; xlsx does. So that a CSV and the same data saved as xlsx give the same
 * cells, a CSV field that is a plain decimal number which survives the round trip to a number
 * and back unchanged becomes that number ("42", "-1.5"); anything else stays the text it was:
 * leading zeros ("007"), trailing zeros ("1.50"), exponents ("1e3"), digits beyond a double's
 * precision ("12345678901234567890"), spaces, dates, booleans. `"text"` keeps every field text.
 */
import type { Cell } from "../../shared/schemas/cells.ts";

export type CsvValues = "typed" | "text";

const PLAIN_DECIMAL = /^-?(?:0|[1-9]\d*)(?:\.\d+)?$/;

export function typeCsvCell(field: string | null): Cell {
  if (field === null || !PLAIN_DECIMAL.test(field)) return field;
  const n = Number(field);
  return String(n) === field ? n : field;
}
