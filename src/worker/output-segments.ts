/**
 * The worker's side of the output workbook: a chunk's rows rendered as finished sheet XML
 * (src/shared/sheet/rows.ts) and compressed as a segment (src/shared/sheet/segment.ts), written
 * beside the chunk under `keys.segment` and listed in the checkpoint's and commit's `segments`, so the merger only
 * stitches bytes. A row whose input the attempt does not hold cannot be rendered: the chunk then
 * gets no segment and the merger renders its rows from the chunk, as it did before.
 */
import { keys } from "../shared/keys.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import { ERROR_COLUMN, fitToExcel, outputRow } from "../shared/output-row.ts";
import type { Cell, ResultRow } from "../shared/schemas/cells.ts";
import type { SegmentRef, ShardMessage } from "../shared/schemas/shard.ts";
import { outputRowNumber, renderRow } from "../shared/sheet/rows.ts";
import { SEGMENT_PIECE_CHARS, type Segment, SegmentBuilder } from "../shared/sheet/segment.ts";

/** One input row as the output shows it: its cells in header order, and the splitter's note. */
export interface RenderInput {
  cells: readonly Cell[];
  note?: string;
}

/** What rendering an attempt's rows needs besides the rows. */
export interface OutputContext {
  /** The operation's input headers (the output's first columns). */
  headers: readonly string[];
  /** The input of every row the attempt runs, by input row index. */
  inputs: ReadonlyMap<number, RenderInput>;
  attemptId: string;
}

export const SEGMENT_CONTENT_TYPE = "application/octet-stream";

/**
 * The compressed XML of `rows` (in row order) with result `columns`, or undefined when an input
 * is not held. `cut`: rows whose text was cut to Excel's cell limit.
 */
export function renderRows(
  rows: readonly ResultRow[],
  columns: readonly string[],
  output: Pick<OutputContext, "headers" | "inputs">,
): { segment: Segment; errorRows: number; cut: number } | undefined {
  const names = [...output.headers, ...columns, ERROR_COLUMN];
  const width = output.headers.length;
  const builder = new SegmentBuilder();
  let xml = "";
  let errorRows = 0;
  let cut = 0;
  for (const row of rows) {
    const input = output.inputs.get(row.i);
    if (!input) return undefined;
    const fitted = fitToExcel(outputRow(input.cells, input.note, row, columns, width), names);
    if (fitted.cut) cut++;
    if (fitted.error !== null) errorRows++;
    xml += renderRow(outputRowNumber(row.i), [...fitted.cells, fitted.error]);
    if (xml.length >= SEGMENT_PIECE_CHARS) {
      builder.add(xml);
      xml = "";
    }
  }
  builder.add(xml);
  return { segment: builder.finish(), errorRows, cut };
}

/**
 * Renders and writes the segment of the chunk `[start, end)` holding `rows`; resolves its ref,
 * or undefined when it cannot be rendered (the merger then renders the chunk).
 */
export async function putSegment(
  store: ObjectStore,
  shard: Pick<ShardMessage, "operationId" | "shardId">,
  piece: { start: number; end: number; rows: readonly ResultRow[] },
  columns: readonly string[],
  output: OutputContext,
  signal: AbortSignal,
): Promise<{ ref: SegmentRef; cut: number } | undefined> {
  const rendered = renderRows(piece.rows, columns, output);
  if (!rendered) return undefined;
  const { segment } = rendered;
  const key = keys.segment(
    shard.operationId,
    shard.shardId,
    piece.start,
    piece.end,
    output.attemptId,
  );
  await store.putBytes(key, segment.bytes, SEGMENT_CONTENT_TYPE, signal);
  return {
    ref: {
      key,
      start: piece.start,
      end: piece.end,
      rows: piece.rows.length,
      errorRows: rendered.errorRows,
      columns: [...columns],
      crc: segment.crc,
      size: segment.size,
      compressedSize: segment.compressedSize,
    },
    cut: rendered.cut,
  };
}
