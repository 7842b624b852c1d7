/**
 * Errors with stable codes. Callers branch on `code` (or the subclass), never on messages.
 * `httpStatusFor` is the one table that maps codes to HTTP statuses.
 */

export type ErrorCode =
  | "CONFIG_INVALID"
  | "BAD_REQUEST"
  | "UNAUTHORIZED"
  | "FORBIDDEN"
  | "SPEC_INVALID"
  | "UNKNOWN_TASK"
  | "EGRESS_REFUSED"
  | "UNSUPPORTED_MEDIA_TYPE"
  | "WORKBOOK_INVALID"
  | "PAYLOAD_TOO_LARGE"
  | "NOT_FOUND"
  | "NOT_READY"
  | "INVALID_STATE"
  | "LIMIT_EXCEEDED"
  | "RATE_LIMITED"
  | "UPLOAD_TOO_SLOW"
  | "MESSAGE_INVALID"
  | "SHARD_LOST"
  | "LEASE_LOST"
  | "RETRYABLE"
  | "TASK_FAILED"
  | "INTERNAL";

export interface ErrorOptions {
  details?: Record<string, unknown>;
  cause?: unknown;
}

/** Base of every error shardfleet raises on purpose. */
export class ShardfleetError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = options.details ?? {};
  }
}

/**
 * A setting is missing, unknown or invalid. Cause: the environment or config file.
 * Fix: correct the setting the message names; the process refuses to start until then.
 */
export class ConfigError extends ShardfleetError {
  constructor(message: string, options?: ErrorOptions) {
    super("CONFIG_INVALID", message, options);
  }
}

/**
 * The caller sent something we cannot accept (spec, workbook, size, media type).
 * Fix: the message names the problem; nothing was persisted.
 */
export class BadInputError extends ShardfleetError {}

/**
 * The request carries no bearer token, or one the API does not know. Fix: send
 * `Authorization: Bearer <token>` with a token the scheduler was given.
 */
export class UnauthorizedError extends ShardfleetError {
  constructor(message: string, options?: ErrorOptions) {
    super("UNAUTHORIZED", message, options);
  }
}

/** The thing asked for does not exist (operation id, object key). */
export class NotFoundError extends ShardfleetError {
  constructor(message: string, options?: ErrorOptions) {
    super("NOT_FOUND", message, options);
  }
}

/** The thing exists but is not ready yet (e.g. the result of a running operation). Retry later. */
export class NotReadyError extends ShardfleetError {
  constructor(message: string, options?: ErrorOptions) {
    super("NOT_READY", message, options);
  }
}

/**
 * The operation's state does not allow what was asked (pause a queued one, resume a running
 * one, cancel a finished one). The message names the state. Fix: check its status first.
 */
export class InvalidStateError extends ShardfleetError {
  constructor(message: string, options?: ErrorOptions) {
    super("INVALID_STATE", message, options);
  }
}

/**
 * A tenant's cap (e.g. its concurrent operations) would be exceeded. Nothing was stored.
 * Fix: wait for an operation to finish, or ask an admin to raise the cap the message names.
 */
export class LimitExceededError extends ShardfleetError {
  constructor(message: string, options?: ErrorOptions) {
    super("LIMIT_EXCEEDED", message, options);
  }
}

/**
 * An upload arrived slower than the API's minimum transfer rate and was cut off; nothing was
 * stored. Fix: upload from a faster link, or ask for SHARDFLEET_API_MIN_UPLOAD_BYTES_PER_S lower.
 */
export class UploadTooSlowError extends ShardfleetError {
  constructor(message: string, options?: ErrorOptions) {
    super("UPLOAD_TOO_SLOW", message, options);
  }
}

/**
 * A transient fault (throttling, a dropped connection, a 5xx from a dependency).
 * Fix: none needed; the caller retries with backoff.
 */
export class RetryableError extends ShardfleetError {
  constructor(message: string, options?: ErrorOptions) {
    super("RETRYABLE", message, options);
  }
}

/**
 * A queue message that does not match the schema. It can never succeed, so it goes to the DLQ.
 */
export class InvalidMessageError extends ShardfleetError {
  constructor(message: string, options?: ErrorOptions) {
    super("MESSAGE_INVALID", message, options);
  }
}

/**
 * This worker no longer owns the shard (its receipt handle expired, or another worker
 * committed it first). The worker stops the shard without committing.
 */
export class ShardLostError extends ShardfleetError {
  constructor(message: string, options?: ErrorOptions) {
    super("SHARD_LOST", message, options);
  }
}

/**
 * This scheduler no longer holds the bucket's scheduler lease (a renewal found another holder,
 * or could not be written before it lapsed). Its loops stop at once; it stands by.
 */
export class LeaseLostError extends ShardfleetError {
  constructor(message: string, options?: ErrorOptions) {
    super("LEASE_LOST", message, options);
  }
}

const HTTP_STATUS: Record<ErrorCode, number> = {
  CONFIG_INVALID: 500,
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  SPEC_INVALID: 400,
  UNKNOWN_TASK: 400,
  EGRESS_REFUSED: 400,
  UNSUPPORTED_MEDIA_TYPE: 415,
  WORKBOOK_INVALID: 422,
  PAYLOAD_TOO_LARGE: 413,
  NOT_FOUND: 404,
  NOT_READY: 409,
  INVALID_STATE: 409,
  LIMIT_EXCEEDED: 429,
  RATE_LIMITED: 429,
  UPLOAD_TOO_SLOW: 408,
  MESSAGE_INVALID: 400,
  SHARD_LOST: 409,
  LEASE_LOST: 503,
  RETRYABLE: 503,
  TASK_FAILED: 500,
  INTERNAL: 500,
};

/** The HTTP status an error code maps to. */
export function httpStatusFor(code: ErrorCode): number {
  return HTTP_STATUS[code];
}

/** A one-line description of any thrown value, for logs and the output's `error` column. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}
