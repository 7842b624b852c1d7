import { describe, expect, it } from "vitest";
import { BadInputError, RetryableError } from "./errors.ts";
import { ObjectChangedError } from "./resumable-read.ts";
import { isTransientError } from "./transient.ts";

const aws = (name: string, status: number, extra: object = {}) =>
  Object.assign(new Error(name), { name, $metadata: { httpStatusCode: status }, ...extra });

describe("isTransientError", () => {
  it.each([
    ["a 503 SlowDown", aws("SlowDown", 503)],
    ["a 500", aws("InternalError", 500)],
    ["a 429", aws("TooManyRequestsException", 429)],
    ["an SDK-marked retryable error", aws("Whatever", 400, { $retryable: {} })],
    ["a reset connection", Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" })],
    ["a body cut short", new Error("aborted")],
    ["a cut wrapped as a cause", new Error("merge failed", { cause: new Error("aborted") })],
    ["an object changed mid-read", new ObjectChangedError('"a"', '"b"')],
    ["our own retryable error (SQS refused a batch)", new RetryableError("SQS refused 3 messages")],
  ])("calls %s transient", (_, err) => {
    expect(isTransientError(err)).toBe(true);
  });

  it.each([
    ["a 403", aws("AccessDenied", 403)],
    ["a 404", aws("NoSuchKey", 404)],
    ["bad input", new BadInputError("SPEC_INVALID", "no such column")],
    ["a plain bug", new TypeError("x is undefined")],
    ["nothing", undefined],
  ])("calls %s permanent", (_, err) => {
    expect(isTransientError(err)).toBe(false);
  });
});
