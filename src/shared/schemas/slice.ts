/**
 * The slice context of an xlsx operation (`keys.sliceContext`): what a worker needs besides its
 * slice of sheet XML to give the cells their meaning. Written once by the splitter, before the
 * first shard is queued; read by workers and the merger (src/shared/slices.ts).
 */
import { z } from "zod";

export const sliceContextSchema = z.strictObject({
  v: z.literal(1),
  /** The workbook counts days from 1904 (old Mac Excel) instead of 1900. */
  date1904: z.boolean(),
  /** Cell style ids (`s`) whose number format shows a date or time. */
  dateStyles: z.array(z.number().int().nonnegative()),
  /** Whether the workbook has a shared-string table, stored at `keys.sharedStrings`. */
  sharedStrings: z.boolean(),
});
export type SliceContext = z.infer<typeof sliceContextSchema>;

/**
 * Where the splitter's scan stood after an xlsx slice (sheet-slicer's `CutMark`), kept in the
 * slice's own metadata so a split interrupted by a lost lease resumes after its last slice
 * instead of from the start (src/scheduler/split-resume.ts). Written and read by the splitter only.
 */
export const sliceMarkSchema = z.strictObject({
  v: z.literal(1),
  /** Bytes of the inflated sheet XML up to the end of the slice's last row. */
  at: z.number().int().nonnegative(),
  /** Data rows up to and including the slice. */
  rows: z.number().int().positive(),
  /** The sheet row number of the slice's last row. */
  lastRow: z.number().int().positive(),
  /** The sheet's namespace prefix ("" or e.g. "x:"). */
  prefix: z.string(),
});
export type SliceMark = z.infer<typeof sliceMarkSchema>;
