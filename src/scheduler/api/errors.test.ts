/**
 * The API's error mapping for faults of its storage: found by the chaos e2e, where a status read
 * throttled past the SDK's three tries answered 500 "internal error" although a retry a moment
 * later succeeded.
 */
import { describe, expect, it } from "vitest";
import { errorResponse } from "./errors.ts";

/** An error as the AWS SDK throws it after its own retries. */
function sdkError(name: string, status: number, message: string): Error {
  return Object.assign(new Error(message), {
    name,
    $fault: status >= 500 ? "server" : "client",
    $metadata: { httpStatusCode: status, attempts: 3 },
  });
}

describe("errorResponse for storage faults", () => {
  it.each([
    ["S3 throttling (503 SlowDown)", sdkError("SlowDown", 503, "Please reduce your request rate.")],
    [
      "an S3 500 InternalError",
      sdkError("InternalError", 500, "We encountered an internal error."),
    ],
    ["SQS throttling", sdkError("ThrottlingException", 400, "Rate exceeded")],
    ["a dropped connection", Object.assign(new Error("socket hang up"), { code: "ECONNRESET" })],
  ])("%s is a 503 RETRYABLE, not a 500", (_what, err) => {
    expect(errorResponse(err)).toEqual({
      status: 503,
      body: { error: { code: "RETRYABLE", message: expect.stringMatching(/retry$/) } },
    });
  });

  it("anything else unexpected is still a 500 INTERNAL", () => {
    expect(errorResponse(new TypeError("x is undefined"))).toEqual({
      status: 500,
      body: { error: { code: "INTERNAL", message: "internal error; see the scheduler's log" } },
    });
    expect(errorResponse(sdkError("AccessDenied", 403, "Access Denied")).status).toBe(500);
  });
});
