/**
 * The shard message on the way in: JSON, the schema, ids the key layout accepts, a range that
 * is not reversed. Kept apart from processing so that a body that can never succeed is refused
 * (InvalidMessageError → DLQ) before any S3 read or attempt record.
 */
import { describeError, InvalidMessageError } from "../shared/errors.ts";
import { keys } from "../shared/keys.ts";
import { type ShardMessage, shardMessageSchema } from "../shared/schemas/shard.ts";

/** Parses a queue message body. Throws InvalidMessageError (→ DLQ) naming what is wrong. */
export function parseShardMessage(body: string): ShardMessage {
  let raw: unknown;
  try {
    raw = JSON.parse(body);
  } catch {
    throw new InvalidMessageError(`shard message is not JSON: ${body.slice(0, 80)}`);
  }
  const parsed = shardMessageSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.map(String).join(".") || "(root)";
    throw new InvalidMessageError(`shard message ${where}: ${issue.message}`, {
      details: { path: where },
    });
  }
  try {
    // The key layout is strict about ids; a message it refuses can never be processed.
    keys.shardPrefix(parsed.data.operationId, parsed.data.shardId);
  } catch (err) {
    throw new InvalidMessageError(`shard message: ${describeError(err)}`, { cause: err });
  }
  if (parsed.data.end < parsed.data.start) {
    throw new InvalidMessageError(
      `shard message: end ${parsed.data.end} is before start ${parsed.data.start}`,
    );
  }
  return parsed.data;
}
