/**
 * Resuming an interrupted xlsx split. Slices are deterministic cuts (same input, same
 * boundaries), so a split that stopped part-way — the scheduler lost its lease, or crashed — can
 * go on after the last slice it wrote instead of starting over. Each slice carries, in its
 * object metadata, where the scan stood after it (`sliceMarkSchema`); a new run finds the
 * longest run of slices 0, 1, … that exist, reads the mark of the last one, and the cut skips the
 * sheet XML before it unscanned (sheet-slicer's `resume`).
 *
 * A slice is written by one PUT, so it exists whole or not at all; the mark is on the same
 * object, so it cannot describe a slice that is not there. Slices after a gap (uploads overlap)
 * are rewritten identically.
 */
import { keys, shardIdFor } from "../shared/keys.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import { type SliceMark, sliceMarkSchema } from "../shared/schemas/slice.ts";

/** The metadata entry holding a slice's mark (URI-encoded JSON: metadata is US-ASCII). */
const MARK_METADATA = "split-mark";

/** The metadata to write with a slice whose scan ended at `mark`. */
export function sliceMarkMetadata(mark: Omit<SliceMark, "v">): Record<string, string> {
  return { [MARK_METADATA]: encodeURIComponent(JSON.stringify({ v: 1, ...mark })) };
}

/** The mark in a slice's metadata; undefined when it has none or an unreadable one. */
function readSliceMark(metadata: Record<string, string>): SliceMark | undefined {
  const raw = metadata[MARK_METADATA];
  if (raw === undefined) return undefined;
  try {
    const parsed = sliceMarkSchema.safeParse(JSON.parse(decodeURIComponent(raw)));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** Where a split of `op` may resume: slices [0, `slices`) exist, the last one ended at `mark`. */
export interface ResumePoint {
  slices: number;
  mark: SliceMark;
}

/**
 * The resume point of `op`'s xlsx split from the slices already written (one LIST, one HEAD);
 * undefined when there is none to resume from (no slice, or the last one has no readable mark,
 * as a slice written by an older release): the split then starts from the beginning.
 */
export async function findResumePoint(
  store: ObjectStore,
  op: string,
  signal?: AbortSignal,
): Promise<ResumePoint | undefined> {
  const written = new Set(await store.list(keys.scratchShardsPrefix(op), signal));
  let slices = 0;
  while (written.has(keys.shardSheetSlice(op, shardIdFor(slices)))) slices++;
  if (slices === 0) return undefined;
  const metadata = await store.metadata(keys.shardSheetSlice(op, shardIdFor(slices - 1)), signal);
  const mark = metadata && readSliceMark(metadata);
  return mark ? { slices, mark } : undefined;
}
