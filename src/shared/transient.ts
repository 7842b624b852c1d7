/**
 * Whether an error is one that the same call may not meet again: throttling, a 5xx, a dropped or
 * refused connection, a timeout, an object that changed under a read. The scheduler retries a
 * split or merge that failed this way instead of failing the operation.
 */
import { RetryableError } from "./errors.ts";
import { ObjectChangedError } from "./resumable-read.ts";

interface ErrorLike {
  name?: string;
  code?: string;
  message?: string;
  $retryable?: unknown;
  $fault?: "client" | "server";
  $metadata?: { httpStatusCode?: number };
  cause?: unknown;
}

const TRANSIENT_NAMES = new Set([
  "SlowDown",
  "Throttling",
  "ThrottlingException",
  "RequestThrottled",
  "RequestThrottledException",
  "TooManyRequestsException",
  "RequestTimeout",
  "RequestTimeoutException",
  "InternalError",
  "ServiceUnavailable",
  "TimeoutError",
]);

/** Node and undici socket errors: the connection, not the request, failed. */
const NETWORK_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ERR_STREAM_PREMATURE_CLOSE",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
]);

export function isTransientError(err: unknown, depth = 0): boolean {
  if (err instanceof ObjectChangedError || err instanceof RetryableError) return true;
  const e = (err ?? {}) as ErrorLike;
  const status = e.$metadata?.httpStatusCode ?? 0;
  if (
    e.$retryable !== undefined ||
    e.$fault === "server" ||
    status >= 500 ||
    status === 429 ||
    (e.name !== undefined && TRANSIENT_NAMES.has(e.name)) ||
    (e.code !== undefined && NETWORK_CODES.has(e.code)) ||
    // Node's message for a response body cut short ("aborted", code ECONNRESET on newer Nodes).
    e.message === "aborted"
  ) {
    return true;
  }
  // Wrapped errors (a stream pipeline's, a ShardfleetError's cause): look one level or two in.
  return depth < 2 && e.cause !== undefined && isTransientError(e.cause, depth + 1);
}
