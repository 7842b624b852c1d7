/**
 * Result chunks, the bytes: a chunk is the NDJSON of a contiguous run of result rows (each
 * validated by resultRowSchema on the way out), written under `keys.chunk`. Small chunks go in
 * one PUT, large (and empty) ones through a multipart upload. Which rows form a chunk and when
 * one is written is ./shard-run.ts's business; the chunk scheme is ./checkpoint.ts's; the
 * commit that names them is src/shared/records/done-marker.ts's.
 */
import { Readable } from "node:stream";
import type { ObjectStore } from "../shared/object-store.ts";
import { type ResultRow, resultRowSchema } from "../shared/schemas/cells.ts";

/** Chunks above this go through multipart upload; below, one PUT is cheaper. */
const SINGLE_PUT_MAX = 4 * 1024 * 1024;

function ndjsonText(rows: readonly ResultRow[]): string {
  let text = "";
  for (const row of rows) text += `${JSON.stringify(resultRowSchema.parse(row))}\n`;
  return text;
}

/** Writes `rows` as one NDJSON chunk at `key`. */
export async function putResultChunk(
  store: ObjectStore,
  key: string,
  rows: readonly ResultRow[],
  signal: AbortSignal,
): Promise<void> {
  const text = ndjsonText(rows);
  // (An empty body goes through Upload too: the SDK warns about an empty PutObject body.)
  if (text.length > 0 && text.length < SINGLE_PUT_MAX) {
    await store.putText(key, text, "application/x-ndjson", signal);
  } else {
    await store.upload(key, Readable.from([Buffer.from(text)]), {
      contentType: "application/x-ndjson",
      signal,
    });
  }
}
