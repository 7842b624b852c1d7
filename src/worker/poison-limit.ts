/**
 * What follows an error attempt (causes: ./attempts.ts): the shard's error attempts are
 * counted from its attempt records in S3 (this one included). Below the operation's
 * `maxErrorAttempts` (3 when the manifest cannot be read) the verdict is a retry after a
 * backoff; at the limit the shard is poison and is committed as failed (`done.json` with
 * `failed`, every row an error row), first finisher wins as for any commit.
 */
import type { Clock } from "../shared/clock.ts";
import { keys } from "../shared/keys.ts";
import type { Logger } from "../shared/logger.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import { type Committer, commitDone, failedResult } from "../shared/records/done-marker.ts";
import { type Manifest, manifestSchema, specOf } from "../shared/schemas/operation.ts";
import type { ShardMessage } from "../shared/schemas/shard.ts";
import type { AttemptRecords } from "./attempt-records.ts";
import { errorAttempts, retryDelaySeconds } from "./attempts.ts";

export interface PoisonLimitDeps {
  store: ObjectStore;
  clock: Clock;
  attemptRecords: AttemptRecords;
}

export interface ErrorAttempt {
  message: ShardMessage;
  /** The operation's manifest when the attempt got that far (else it is read here). */
  manifest: Manifest | undefined;
  /** The attempt that failed: it commits the shard failed at the limit. */
  attempt: Committer;
  /** What failed the attempt, and its one-line description (the attempt record's error). */
  err: unknown;
  error: string;
}

/** Below the limit: retry after a backoff. At it: committed failed (`won`: by this attempt). */
export type PoisonVerdict =
  | { kind: "retry"; afterSeconds: number; errorAttempts: number }
  | { kind: "failed"; won: boolean };

/**
 * Counts the shard's error attempts (this one included): at the limit, commits the shard as
 * failed and resolves whether that commit won (false: the shard was committed meanwhile);
 * below it, resolves a retry with a backoff.
 */
export async function retryOrCommitFailed(
  deps: PoisonLimitDeps,
  failure: ErrorAttempt,
  logger: Logger,
): Promise<PoisonVerdict> {
  const { store, clock, attemptRecords } = deps;
  const { message, attempt, err, error } = failure;
  let { manifest } = failure;
  const { operationId } = message;
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
    return { kind: "retry", afterSeconds: delay, errorAttempts: count };
  }
  const failed = `shard failed after ${count} error attempts: ${error}`;
  const won = await commitDone(
    { store, clock },
    attempt,
    failedResult(message, failed),
    AbortSignal.timeout(10_000),
  );
  logger.error(
    { errorAttempts: count, maxErrorAttempts: limit, error, committed: won },
    won ? "poison shard: committed as failed" : "poison shard, but it was committed meanwhile",
  );
  return { kind: "failed", won };
}
