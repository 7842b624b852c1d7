/**
 * What follows an error attempt (causes: ./attempts.ts): the shard's error attempts are
 * counted from its attempt records in S3 (this one included). Below the operation's
 * `maxErrorAttempts` (3 when the manifest cannot be read) a ShardAttemptFailedError asks for a
 * retry after a backoff; at the limit the shard is poison and is committed as failed
 * (`done.json` with `failed`, every row an error row), first finisher wins as for any commit.
 */
import type { Clock } from "../shared/clock.ts";
import { keys } from "../shared/keys.ts";
import type { Logger } from "../shared/logger.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import { type Manifest, manifestSchema, specOf } from "../shared/schemas/operation.ts";
import type { Attempt, ShardMessage } from "../shared/schemas/shard.ts";
import type { AttemptRecords } from "./attempt-records.ts";
import { errorAttempts, retryDelaySeconds, ShardAttemptFailedError } from "./attempts.ts";
import { commitDone } from "./result-chunks.ts";

export interface PoisonLimitDeps {
  store: ObjectStore;
  clock: Clock;
  attemptRecords: AttemptRecords;
}

export interface ErrorAttempt {
  message: ShardMessage;
  /** The operation's manifest when the attempt got that far (else it is read here). */
  manifest: Manifest | undefined;
  attempt: Attempt;
  /** What failed the attempt, and its one-line description (the attempt record's error). */
  err: unknown;
  error: string;
}

/**
 * Counts the shard's error attempts (this one included): at the limit, commits the shard as
 * failed and resolves whether that commit won (false: the shard was committed meanwhile);
 * below it, throws ShardAttemptFailedError with a backoff for the retry.
 */
export async function retryOrCommitFailed(
  deps: PoisonLimitDeps,
  failure: ErrorAttempt,
  logger: Logger,
): Promise<boolean> {
  const { store, clock, attemptRecords } = deps;
  const { message, attempt, err, error } = failure;
  let { manifest } = failure;
  const { operationId, start, end } = message;
  let count = 1;
  let limit = 3;
  try {
    manifest ??= await store.getJson(
      keys.manifest(operationId),
      manifestSchema,
      AbortSignal.timeout(10_000),
    );
    if (manifest) limit = specOf(manifest).maxErrorAttempts;
    count = errorAttempts(await attemptRecords.list(message, AbortSignal.timeout(10_000)));
  } catch (countErr) {
    logger.warn({ err: countErr }, "cannot count the shard's error attempts");
  }
  if (count < limit) {
    const delay = retryDelaySeconds(count);
    logger.warn(
      { err, errorAttempts: count, maxErrorAttempts: limit, retryInSeconds: delay },
      "shard attempt failed; it will be retried",
    );
    throw new ShardAttemptFailedError(error, {
      cause: err,
      retryDelaySeconds: delay,
      errorAttempts: count,
    });
  }
  const failed = `shard failed after ${count} error attempts: ${error}`;
  const rows = end - start;
  const won = await commitDone(
    { store, clock },
    attempt,
    { rows, errorRows: rows, columns: [], chunks: [], failed },
    AbortSignal.timeout(10_000),
  );
  logger.error(
    { errorAttempts: count, maxErrorAttempts: limit, error, committed: won },
    won ? "poison shard: committed as failed" : "poison shard, but it was committed meanwhile",
  );
  return won;
}
