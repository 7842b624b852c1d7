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
