/**
 * Result chunks, the bytes: a chunk is the NDJSON of a contiguous run of result rows (each
 * validated by resultRowSchema on the way out), written under `keys.chunk`. Small chunks go in
 * one PUT, large (and empty) ones through a multipart upload. Which rows form a chunk and when
 * one is written is ./shard-run.ts's business; the chunk scheme is ./checkpoint.ts's. Also the
 * shard's commit, `done.json`, which names the chunks (or, for a poison shard, its failure).
 */
import { Readable } from "node:stream";
import type { Clock } from "../shared/clock.ts";
import { keys } from "../shared/keys.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import { type ResultRow, resultRowSchema } from "../shared/schemas/cells.ts";
import { type Attempt, type ShardDone, shardDoneSchema } from "../shared/schemas/shard.ts";

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

/**
 * Commits the shard for `attempt`: `done.json` with a conditional put, first finisher wins.
 * Resolves whether this attempt won (false: the shard was committed meanwhile).
 */
export async function commitDone(
  deps: { store: ObjectStore; clock: Clock },
  attempt: Attempt,
  result: Pick<ShardDone, "rows" | "errorRows" | "columns" | "chunks" | "failed">,
  signal: AbortSignal,
): Promise<boolean> {
  const { operationId, shardId, attemptId, instanceId } = attempt;
  return deps.store.putJsonIfAbsent(
    keys.done(operationId, shardId),
    shardDoneSchema,
    {
      v: 1,
      operationId,
      shardId,
      attemptId,
      instanceId,
      ...result,
      committedAt: new Date(deps.clock.now()).toISOString(),
    },
    signal,
  );
}
