/**
 * The classifier against the SDK's own exception classes, built as the SDK builds them from a
 * response: modeled errors (NoSuchKey, QueueDoesNotExist, …) and each service's base exception
 * for the codes it does not model (EC2 models none; S3's PreconditionFailed, SlowDown).
 */
import { EC2ServiceException } from "@aws-sdk/client-ec2";
import {
  AccessDenied,
  NoSuchBucket,
  NoSuchKey,
  NotFound,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import {
  InvalidAttributeName,
  MessageNotInflight,
  OverLimit,
  QueueDoesNotExist,
  ReceiptHandleIsInvalid,
  RequestThrottled,
  SQSServiceException,
} from "@aws-sdk/client-sqs";
import { ParameterNotFound } from "@aws-sdk/client-ssm";
import { describe, expect, it } from "vitest";
import {
  type AwsErrorKind,
  awsErrorCode,
  awsErrorCodes,
  awsHttpStatus,
  classifyAwsError,
  isAwsServiceError,
  isRetryableAwsError,
} from "./aws-errors.ts";

const meta = (httpStatusCode: number) => ({ httpStatusCode, requestId: "req-1" });
type Fault = "client" | "server";

const s3 = (name: string, status: number, $fault: Fault = "client") =>
  new S3ServiceException({ name, $fault, $metadata: meta(status), message: name });
const ec2 = (name: string, status: number, $fault: Fault = "client") =>
  new EC2ServiceException({ name, $fault, $metadata: meta(status), message: `${name}: …` });
/** SQS's JSON protocol keeps the legacy query code beside the name (awsQueryCompatible). */
const withCode = <E extends Error>(err: E, Code: string): E => Object.assign(err, { Code });
const socket = (code: string) => Object.assign(new Error(`connect ${code}`), { code });

const cases: [string, unknown, AwsErrorKind][] = [
  // S3
  [
    "S3 NoSuchKey",
    new NoSuchKey({ $metadata: meta(404), message: "The specified key does not exist." }),
    "not-found",
  ],
  ["S3 NotFound (HEAD)", new NotFound({ $metadata: meta(404), message: "" }), "not-found"],
  ["S3 NoSuchBucket", new NoSuchBucket({ $metadata: meta(404), message: "" }), "not-found"],
  ["S3 PreconditionFailed", s3("PreconditionFailed", 412), "precondition-failed"],
  ["S3 ConditionalRequestConflict", s3("ConditionalRequestConflict", 409), "conflict"],
  ["S3 SlowDown (a 503)", s3("SlowDown", 503, "server"), "throttled"],
  ["S3 InternalError", s3("InternalError", 500, "server"), "transient"],
  ["S3 AccessDenied", new AccessDenied({ $metadata: meta(403), message: "" }), "access-denied"],
  ["S3 InvalidArgument", s3("InvalidArgument", 400), "invalid"],
  ["an S3 status with no code the SDK knows (412)", s3("UnknownError", 412), "precondition-failed"],
  ["an S3 status with no code the SDK knows (404)", s3("UnknownError", 404), "not-found"],
  // SQS
  [
    "SQS QueueDoesNotExist",
    withCode(
      new QueueDoesNotExist({
        $metadata: meta(400),
        message: "The specified queue does not exist.",
      }),
      "AWS.SimpleQueueService.NonExistentQueue",
    ),
    "not-found",
  ],
  [
    "SQS RequestThrottled",
    new RequestThrottled({ $metadata: meta(400), message: "" }),
    "throttled",
  ],
  [
    "SQS ReceiptHandleIsInvalid",
    new ReceiptHandleIsInvalid({ $metadata: meta(400), message: "" }),
    "invalid",
  ],
  [
    "SQS MessageNotInflight",
    new MessageNotInflight({ $metadata: meta(400), message: "" }),
    "invalid",
  ],
  [
    "SQS InvalidAttributeName",
    new InvalidAttributeName({ $metadata: meta(400), message: "" }),
    "invalid",
  ],
  ["SQS OverLimit (a 403)", new OverLimit({ $metadata: meta(403), message: "" }), "throttled"],
  [
    "SQS AccessDenied (unmodeled)",
    new SQSServiceException({
      name: "AccessDeniedException",
      $fault: "client",
      $metadata: meta(400),
      message: "",
    }),
    "access-denied",
  ],
  // EC2 (no modeled errors: the base exception named by its code)
  ["EC2 RequestLimitExceeded", ec2("RequestLimitExceeded", 503, "server"), "throttled"],
  ["EC2 UnauthorizedOperation", ec2("UnauthorizedOperation", 403), "access-denied"],
  [
    "EC2 AuthFailure.ServiceLinkedRoleCreationNotPermitted",
    ec2("AuthFailure.ServiceLinkedRoleCreationNotPermitted", 400),
    "access-denied",
  ],
  ["EC2 InvalidParameterValue", ec2("InvalidParameterValue", 400), "invalid"],
  ["EC2 MissingParameter", ec2("MissingParameter", 400), "invalid"],
  ["EC2 Server.InternalError", ec2("Server.InternalError", 500, "server"), "transient"],
  [
    "EC2 InsufficientInstanceCapacity (sent as a 500)",
    ec2("InsufficientInstanceCapacity", 500, "server"),
    "transient",
  ],
  ["EC2 RequestExpired", ec2("RequestExpired", 400), "transient"],
  // Credentials and timeouts
  ["an expired session token (refreshed by the SDK)", s3("ExpiredToken", 400), "transient"],
  [
    "an SDK TimeoutError",
    Object.assign(new Error("timed out"), { name: "TimeoutError" }),
    "transient",
  ],
  // SSM
  [
    "SSM ParameterNotFound",
    new ParameterNotFound({ $metadata: meta(400), message: "" }),
    "not-found",
  ],
  // Below the SDK
  ["a reset connection", socket("ECONNRESET"), "transient"],
  ["an undici socket error", socket("UND_ERR_SOCKET"), "transient"],
  ["a body cut short", new Error("aborted"), "transient"],
  [
    "the SDK's own retryable marker",
    Object.assign(s3("Whatever", 400), { $retryable: {} }),
    "transient",
  ],
  [
    "the SDK's throttling marker",
    Object.assign(s3("Whatever", 400), { $retryable: { throttling: true } }),
    "throttled",
  ],
  ["an abort", new DOMException("This operation was aborted", "AbortError"), "aborted"],
  ["a plain bug", new TypeError("x is undefined"), "other"],
  ["nothing", undefined, "other"],
  ["a string", "boom", "other"],
];

describe("classifyAwsError", () => {
  it.each(cases)("calls %s %s", (_, err, kind) => {
    expect(classifyAwsError(err)).toBe(kind);
  });

  it("calls throttled and transient errors retryable, and nothing else", () => {
    for (const [what, err, kind] of cases) {
      expect([what, isRetryableAwsError(err)]).toEqual([
        what,
        kind === "throttled" || kind === "transient",
      ]);
    }
  });
});

describe("the error's codes and status", () => {
  it("lists name, then Code, without prefixes", () => {
    const err = withCode(
      new QueueDoesNotExist({ $metadata: meta(400), message: "" }),
      "AWS.SimpleQueueService.NonExistentQueue",
    );
    expect(awsErrorCodes(err)).toEqual(["QueueDoesNotExist", "NonExistentQueue"]);
    expect(awsErrorCode(ec2("Client.InvalidParameterValue", 400))).toBe("InvalidParameterValue");
    expect(awsErrorCode(socket("ECONNRESET"))).toBe("ECONNRESET");
    expect(awsErrorCode(new Error("plain"))).toBeUndefined();
    expect(awsErrorCode(null)).toBeUndefined();
  });

  it("tells a service response from a local failure", () => {
    expect(isAwsServiceError(s3("SlowDown", 503, "server"))).toBe(true);
    expect(awsHttpStatus(s3("SlowDown", 503, "server"))).toBe(503);
    expect(isAwsServiceError(socket("ECONNRESET"))).toBe(false);
    expect(isAwsServiceError(undefined)).toBe(false);
    expect(awsHttpStatus(new Error("x"))).toBeUndefined();
  });
});
