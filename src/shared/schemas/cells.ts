/**
 * Cell values as they travel between splitter, worker and merger (NDJSON). JSON has no date
 * type, so dates travel as `{ "$date": ISO-8601 }` and are revived at both ends.
 */
import { z } from "zod";

export const encodedDateSchema = z.object({ $date: z.iso.datetime() });
export const encodedCellSchema = z.union([
  z.string(),
  z.number(),
  z.boolean(),
  z.null(),
  encodedDateSchema,
]);
export type EncodedCell = z.infer<typeof encodedCellSchema>;

/** A cell as tasks see it. */
export type Cell = string | number | boolean | Date | null;

export function encodeCell(value: Cell): EncodedCell {
  if (value instanceof Date) return { $date: value.toISOString() };
  if (typeof value === "number" && !Number.isFinite(value)) return String(value);
  // JSON has no negative zero; say so here rather than let it change sign in transit.
  if (Object.is(value, -0)) return 0;
  return value;
}

/**
 * The cell as it is after a trip through JSON (`decodeCell(encodeCell(value))`) without the
 * trip: what a reader hands a task straight from the parser keeps the meaning an NDJSON slice
 * gives it (non-finite numbers as text, no negative zero).
 */
export function canonicalCell(value: Cell): Cell {
  if (typeof value !== "number") return value;
  if (!Number.isFinite(value)) return String(value);
  return value === 0 ? 0 : value;
}

export function decodeCell(value: EncodedCell): Cell {
  if (value !== null && typeof value === "object") return new Date(value.$date);
  return value;
}

/**
 * One input row in a shard slice: its input row index, its cells in header order, and `n`, a
 * note when the input's shape kept some of its values from the task (cells beyond the header,
 * text cut to Excel's cell limit, a formula with no cached value). The note becomes the row's
 * error in the output, so nothing is lost without a word.
 */
export const inputRowSchema = z.object({
  i: z.number().int().nonnegative(),
  c: z.array(encodedCellSchema),
  n: z.string().optional(),
});
export type InputRow = z.infer<typeof inputRowSchema>;

/** One row's outcome in a result chunk: its row index, its result columns, or its error. */
export const resultRowSchema = z.object({
  i: z.number().int().nonnegative(),
  r: z.record(z.string(), encodedCellSchema).optional(),
  e: z.string().optional(),
});
export type ResultRow = z.infer<typeof resultRowSchema>;
