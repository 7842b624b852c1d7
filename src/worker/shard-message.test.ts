import { describe, expect, it } from "vitest";
import { InvalidMessageError } from "../shared/errors.ts";
import { parseShardMessage } from "./shard-message.ts";

describe("parseShardMessage", () => {
  it("accepts a valid message", () => {
    const m = { v: 1, operationId: "op1", shardId: "s000000", start: 0, end: 5 };
    expect(parseShardMessage(JSON.stringify(m))).toEqual(m);
  });

  it.each([
    ["not json", /not JSON/],
    [JSON.stringify({ v: 1, operationId: "op1", shardId: "s1", start: 0 }), /end/],
    [
      JSON.stringify({ v: 2, operationId: "op1", shardId: "s1", start: 0, end: 1 }),
      /^shard message v:/,
    ],
    [JSON.stringify({ v: 1, operationId: "op1", shardId: "s1", start: 5, end: 1 }), /before start/],
    [
      JSON.stringify({ v: 1, operationId: "../op", shardId: "s1", start: 0, end: 1 }),
      /invalid operation id/,
    ],
    [
      JSON.stringify({ v: 1, operationId: "op1", shardId: "../s1", start: 0, end: 1 }),
      /invalid shard id/,
    ],
  ])("throws InvalidMessageError for %s", (body, message) => {
    expect(() => parseShardMessage(body)).toThrow(InvalidMessageError);
    expect(() => parseShardMessage(body)).toThrow(message);
  });
});
