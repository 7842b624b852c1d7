/**
 * What an attempt reads before it runs a row: the shard's checkpoint (where to resume) and its
 * input slice (`keys.shardInput`, one NDJSON input row per line, written by the splitter).
 * A slice that breaks the splitter's contract is an INTERNAL error (an error attempt); an
 * unreadable checkpoint is only ignored (the shard starts over).
 */
import { createInterface } from "node:readline";
import { NotFoundError, ShardfleetError } from "../shared/errors.ts";
import { keys } from "../shared/keys.ts";
import type { Logger } from "../shared/logger.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import { type Cell, decodeCell, inputRowSchema } from "../shared/schemas/cells.ts";
import { type Checkpoint, checkpointSchema, type ShardMessage } from "../shared/schemas/shard.ts";
import type { TaskRow } from "./tasks/task.ts";

/** The shard's checkpoint, or undefined (none, or unreadable: then the shard starts over). */
export async function loadCheckpoint(
  store: ObjectStore,
  message: ShardMessage,
  signal: AbortSignal,
  logger: Logger,
): Promise<Checkpoint | undefined> {
  try {
    return await store.getJson(
      keys.checkpoint(message.operationId, message.shardId),
      checkpointSchema,
      signal,
    );
  } catch (err) {
    if (signal.aborted) throw err;
    if (err instanceof SyntaxError || (err as { name?: unknown }).name === "ZodError") {
      logger.warn({ err }, "ignoring an unreadable checkpoint");
      return undefined;
    }
    throw err;
  }
}

/**
 * The shard's input rows from `cursor` on, cells decoded and keyed by header, and the number
 * of rows in the whole slice. Rows before the cursor are only counted, never decoded or run.
 */
export async function readSlice(
  store: ObjectStore,
  message: ShardMessage,
  headers: string[],
  signal: AbortSignal,
  cursor: number,
): Promise<{ rows: TaskRow[]; total: number }> {
  const { operationId, shardId, start, end } = message;
  const key = keys.shardInput(operationId, shardId);
  const stream = await store.getStream(key, signal);
  if (!stream) throw new NotFoundError(`shard input ${key} does not exist`);
  const rows: TaskRow[] = [];
  let total = 0;
  let line = 0;
  for await (const text of createInterface({ input: stream, crlfDelay: Infinity })) {
    line++;
    if (text.trim() === "") continue;
    let parsed: ReturnType<typeof inputRowSchema.safeParse>;
    try {
      parsed = inputRowSchema.safeParse(JSON.parse(text));
    } catch {
      throw new ShardfleetError("INTERNAL", `shard input ${key} line ${line} is not JSON`);
    }
    if (!parsed.success) {
      throw new ShardfleetError(
        "INTERNAL",
        `shard input ${key} line ${line}: ${parsed.error.issues[0]?.message}`,
      );
    }
    const { i, c } = parsed.data;
    if (i < start || i >= end) {
      throw new ShardfleetError(
        "INTERNAL",
        `shard input ${key} line ${line}: row ${i} is outside the shard [${start}, ${end})`,
      );
    }
    total++;
    if (i < cursor) continue;
    const values: Record<string, Cell> = {};
    headers.forEach((header, at) => {
      const cell = c[at];
      values[header] = cell === undefined ? null : decodeCell(cell);
    });
    rows.push({ index: i, values });
  }
  return { rows, total };
}
