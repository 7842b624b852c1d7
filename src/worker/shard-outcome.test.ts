import { describe, expect, it } from "vitest";
import { ShardLostError } from "../shared/errors.ts";
import { outcomeOfError, stoppedOutcome } from "./shard-outcome.ts";

const aborted = (reason: unknown) => {
  const c = new AbortController();
  c.abort(reason);
  return c.signal;
};

describe("stoppedOutcome", () => {
  it("abandons a shard lost to another worker (its receipt handle is stale)", () => {
    expect(stoppedOutcome(aborted(new ShardLostError("receipt handle invalid")))).toEqual({
      kind: "abandon",
      reason: "receipt handle invalid",
    });
  });

  it("releases an interrupted shard at once", () => {
    expect(stoppedOutcome(aborted(new Error("worker stopping (spot notice)")))).toEqual({
      kind: "release",
      afterSeconds: 0,
      why: "interrupted",
      reason: "worker stopping (spot notice)",
    });
  });
});

describe("outcomeOfError (a handler that threw)", () => {
  it("releases the message at once: no delay for the unexpected", () => {
    const err = new Error("other");
    expect(outcomeOfError(err, new AbortController().signal)).toEqual({
      kind: "release",
      afterSeconds: 0,
      why: "failed",
      reason: "other",
      err,
    });
  });

  it("goes by the shard's signal when it aborted: lost stays lost, stopped is released", () => {
    const err = new Error("aborted");
    expect(outcomeOfError(err, aborted(new ShardLostError("gone"))).kind).toBe("abandon");
    expect(outcomeOfError(err, aborted(new Error("stopping")))).toMatchObject({
      kind: "release",
      why: "interrupted",
      afterSeconds: 0,
    });
  });
});
