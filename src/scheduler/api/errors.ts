/**
 * The API's one error handler: every failure becomes `{ error: { code, message } }`.
 * ShardfleetErrors map through `httpStatusFor`; fastify's own 4xx errors (validation, content
 * type, multipart limits) get the nearest stable code; a transient S3/SQS fault (throttling, a
 * 5xx, a dropped connection) is a 503 RETRYABLE with Retry-After; anything else is a 500 with a
 * generic message, logged in full under `err`.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { type ErrorCode, httpStatusFor, ShardfleetError } from "../../shared/errors.ts";
import { isTransientError } from "../../shared/transient.ts";

/** The error body (contract: `errorBodySchema` in `src/shared/contracts/api.ts`). */
export interface ErrorBody {
  error: { code: ErrorCode; message: string };
}

/** Messages for fastify and @fastify/multipart errors whose own wording helps nobody. */
const FRAMEWORK_ERRORS: Record<string, { code: ErrorCode; status: number; message?: string }> = {
  FST_INVALID_MULTIPART_CONTENT_TYPE: {
    code: "UNSUPPORTED_MEDIA_TYPE",
    status: 415,
    message:
      'the request is not multipart/form-data: send a "spec" field (JSON) and a "file" (xlsx or csv)',
  },
  FST_INVALID_JSON_FIELD_ERROR: {
    code: "SPEC_INVALID",
    status: 400,
    message: 'field "spec" is declared application/json but is not valid JSON',
  },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { code: "UNSUPPORTED_MEDIA_TYPE", status: 415 },
  FST_ERR_CTP_BODY_TOO_LARGE: { code: "PAYLOAD_TOO_LARGE", status: 413 },
  FST_REQ_FILE_TOO_LARGE: { code: "PAYLOAD_TOO_LARGE", status: 413 },
  FST_PARTS_LIMIT: { code: "PAYLOAD_TOO_LARGE", status: 413, message: "too many multipart parts" },
  FST_FILES_LIMIT: { code: "PAYLOAD_TOO_LARGE", status: 413, message: "too many files" },
  FST_FIELDS_LIMIT: { code: "PAYLOAD_TOO_LARGE", status: 413, message: "too many fields" },
};

function codeForStatus(status: number): ErrorCode {
  switch (status) {
    case 404:
      return "NOT_FOUND";
    case 408:
      return "UPLOAD_TOO_SLOW";
    case 409:
      return "NOT_READY";
    case 413:
      return "PAYLOAD_TOO_LARGE";
    case 415:
      return "UNSUPPORTED_MEDIA_TYPE";
    case 429:
      return "RATE_LIMITED";
    default:
      return "BAD_REQUEST";
  }
}

/** Status and body for any thrown value. */
export function errorResponse(err: unknown): { status: number; body: ErrorBody } {
  if (err instanceof ShardfleetError) {
    return {
      status: httpStatusFor(err.code),
      body: { error: { code: err.code, message: err.message } },
    };
  }
  if (isTransientError(err)) {
    // S3/SQS throttled us or failed for now (after the SDK's own tries): the same request may
    // well succeed in a moment, which a 500 "internal error" would not say.
    return {
      status: 503,
      body: {
        error: {
          code: "RETRYABLE",
          message: "storage is unavailable for the moment (throttled or a transient fault); retry",
        },
      },
    };
  }
  const fe = err as Partial<FastifyError> | undefined;
  const known = fe?.code ? FRAMEWORK_ERRORS[fe.code] : undefined;
  if (known) {
    return {
      status: known.status,
      body: { error: { code: known.code, message: known.message ?? fe?.message ?? known.code } },
    };
  }
  const status = fe?.statusCode;
  if (fe?.validation || (status !== undefined && status >= 400 && status < 500)) {
    const s = fe?.validation ? 400 : (status ?? 400);
    return {
      status: s,
      body: { error: { code: codeForStatus(s), message: fe?.message ?? "bad request" } },
    };
  }
  return {
    status: 500,
    body: { error: { code: "INTERNAL", message: "internal error; see the scheduler's log" } },
  };
}

export function handleError(err: unknown, request: FastifyRequest, reply: FastifyReply) {
  const { status, body } = errorResponse(err);
  if (status >= 500) request.log.error({ err }, "request failed");
  else request.log.info({ code: body.error.code, status }, body.error.message);
  // RFC 6750: a 401 names the scheme the client should use.
  if (status === 401) reply.header("www-authenticate", "Bearer");
  if (status === 503) reply.header("retry-after", "1");
  return reply.code(status).send(body);
}

export function handleNotFound(request: FastifyRequest, reply: FastifyReply) {
  const body: ErrorBody = {
    error: { code: "NOT_FOUND", message: `no route ${request.method} ${request.url}` },
  };
  return reply.code(404).send(body);
}
