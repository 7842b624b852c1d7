/**
 * Whether an error is one that the same call may not meet again: throttling, a 5xx, a dropped or
 * refused connection, a timeout, an object that changed under a read. The scheduler retries a
 * split or merge that failed this way instead of failing the operation.
 */
import { isRetryableAwsError } from "./aws-errors.ts";
import { RetryableError } from "./errors.ts";
import { ObjectChangedError } from "./resumable-read.ts";

export function isTransientError(err: unknown, depth = 0): boolean {
  if (err instanceof ObjectChangedError || err instanceof RetryableError) return true;
  if (isRetryableAwsError(err)) return true;
  // Wrapped errors (a stream pipeline's, a ShardfleetError's cause): look one level or two in.
  const cause = err instanceof Error ? err.cause : undefined;
  return depth < 2 && cause !== undefined && isTransientError(cause, depth + 1);
}
