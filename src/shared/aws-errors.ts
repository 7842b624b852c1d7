/**
 * What an error thrown by an AWS SDK v3 call (or by the connection under it) means, in one place:
 * every module that reacts to an AWS error asks `classifyAwsError` instead of inspecting `name`,
 * `Code`, `$metadata` or `$retryable` itself.
 *
 * The SDK sets `name` to the service's error code (`NoSuchKey`, `QueueDoesNotExist`; EC2's
 * unmodeled errors carry theirs, e.g. `InsufficientInstanceCapacity`); SQS's JSON protocol adds
 * the legacy query code as `Code` (`AWS.SimpleQueueService.NonExistentQueue`); EC2 sometimes
 * prefixes codes with `Client.` or `Server.`; Node and undici socket errors carry `code`.
 * Throttling and transient faults are first what the SDK's own retry strategy says they are
 * (@smithy/core/retry), then the few codes it does not name.
 */
import { isServerError, isThrottlingError, isTransientError } from "@smithy/core/retry";

export type AwsErrorKind =
  /** The call was aborted (our signal or a timeout signal). */
  | "aborted"
  /** No such object, queue, parameter or resource (404). */
  | "not-found"
  /** A conditional request's condition did not hold (412). */
  | "precondition-failed"
  /** Another request on the same resource got in the way (409); retrying yields the answer. */
  | "conflict"
  /** Too many requests: retry after a pause (429, SlowDown, RequestLimitExceeded, …). */
  | "throttled"
  /** The caller may not do this, or its credentials are bad (403, AccessDenied, …). */
  | "access-denied"
  /** The same call may succeed later: a 5xx, a timeout, a dropped connection. */
  | "transient"
  /** The request is wrong and will stay wrong (400, Invalid…, Missing…, validation). */
  | "invalid"
  /** Anything else, including errors that did not come from AWS at all. */
  | "other";

/** What the SDK's own classifiers take. */
type SdkError = Parameters<typeof isThrottlingError>[0];

interface AwsErrorLike {
  name?: unknown;
  Code?: unknown;
  code?: unknown;
  message?: unknown;
  $fault?: unknown;
  $retryable?: { throttling?: boolean };
  $metadata?: { httpStatusCode?: number };
}

const NOT_FOUND = new Set([
  "NotFound",
  "NoSuchKey",
  "NoSuchBucket",
  "NoSuchUpload",
  "QueueDoesNotExist",
  "NonExistentQueue",
  "ParameterNotFound",
  "ResourceNotFoundException",
]);

const PRECONDITION_FAILED = new Set(["PreconditionFailed"]);

const CONFLICT = new Set(["ConditionalRequestConflict", "OperationAborted"]);

/** Throttling the SDK's own list (isThrottlingError) does not name. */
const THROTTLED = new Set([
  // SQS: too many messages in flight (sent as a 403); frees up as messages are deleted.
  "OverLimit",
]);

const ACCESS_DENIED = new Set([
  "AccessDenied",
  "AccessDeniedException",
  "AuthFailure",
  "UnauthorizedOperation",
  "InvalidClientTokenId",
  "UnrecognizedClientException",
  "SignatureDoesNotMatch",
  "InvalidAccessKeyId",
]);

/** Transient faults the SDK's own checks (isTransientError, isServerError) do not name. */
const TRANSIENT = new Set([
  // Service faults sent with a status the SDK does not retry on its own, or prefixed.
  "InternalError",
  "InternalFailure",
  "ServiceUnavailable",
  "Unavailable",
  // EC2: the request's signature is too old; signed again, it goes through.
  "RequestExpired",
  // Credentials from the instance role are refreshed by the SDK; the next call has new ones.
  "ExpiredToken",
  "ExpiredTokenException",
  // Socket errors the SDK's list leaves out: the connection, not the request, failed.
  "ECONNABORTED",
  "ERR_STREAM_PREMATURE_CLOSE",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
]);

const INVALID = new Set([
  "ValidationError",
  "ValidationException",
  "MalformedXML",
  "UnsupportedOperation",
  "IdempotentParameterMismatch",
]);

function asLike(err: unknown): AwsErrorLike | undefined {
  return typeof err === "object" && err !== null ? (err as AwsErrorLike) : undefined;
}

/** A code without EC2's `Client.`/`Server.` or SQS's `AWS.SimpleQueueService.` prefix. */
export function bareAwsCode(code: string): string {
  return code.replace(/^(Client\.|Server\.|AWS\.SimpleQueueService\.)/, "");
}

/**
 * The error's codes, most specific first and without prefixes: the SDK's `name`, the query
 * protocol's `Code`, a socket error's `code`. Empty for a value that is not an error object.
 */
export function awsErrorCodes(err: unknown): string[] {
  const e = asLike(err);
  if (!e) return [];
  const codes = [e.name, e.Code, e.code].filter(
    (c): c is string => typeof c === "string" && c !== "" && c !== "Error",
  );
  return [...new Set(codes.map(bareAwsCode))];
}

/** The error's main code (its SDK `name` as a rule), or undefined for a plain error. */
export function awsErrorCode(err: unknown): string | undefined {
  return awsErrorCodes(err)[0];
}

/** The HTTP status AWS answered with, when the error is a service response. */
export function awsHttpStatus(err: unknown): number | undefined {
  return asLike(err)?.$metadata?.httpStatusCode;
}

/** Whether the error is a response of an AWS service (or a local peer), not a local failure. */
export function isAwsServiceError(err: unknown): boolean {
  const metadata = asLike(err)?.$metadata;
  return typeof metadata === "object" && metadata !== null;
}

/** What the error means for the caller; see `AwsErrorKind`. Codes win over the HTTP status. */
export function classifyAwsError(err: unknown): AwsErrorKind {
  const e = asLike(err);
  if (!e) return "other";
  const codes = awsErrorCodes(err);
  const has = (set: ReadonlySet<string>) => codes.some((c) => set.has(c));
  if (codes.includes("AbortError")) return "aborted";
  if (has(NOT_FOUND)) return "not-found";
  if (has(PRECONDITION_FAILED)) return "precondition-failed";
  if (has(CONFLICT)) return "conflict";
  const sdk = e as SdkError;
  if (has(THROTTLED) || isThrottlingError(sdk)) return "throttled";
  if (has(ACCESS_DENIED) || codes.some((c) => c.startsWith("AuthFailure."))) {
    return "access-denied";
  }
  if (has(TRANSIENT) || isTransientError(sdk) || isServerError(sdk)) return "transient";
  // Node's message for a response body cut short ("aborted", code ECONNRESET on newer Nodes).
  if (e.message === "aborted" && e.name === "Error") return "transient";
  const status = awsHttpStatus(err) ?? 0;
  if (status === 404) return "not-found";
  if (status === 412) return "precondition-failed";
  if (status === 409) return "conflict";
  if (status === 429) return "throttled";
  if (status === 403) return "access-denied";
  if (status >= 500 || e.$fault === "server") return "transient";
  if (
    has(INVALID) ||
    codes.some((c) => c.startsWith("Invalid") || c.startsWith("Missing")) ||
    status === 400
  ) {
    return "invalid";
  }
  return "other";
}

/** Throttled or transient: the same call may succeed after a pause. */
export function isRetryableAwsError(err: unknown): boolean {
  const kind = classifyAwsError(err);
  return kind === "throttled" || kind === "transient";
}
