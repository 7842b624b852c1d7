import { describe, expect, it } from "vitest";
import { ShardLostError } from "../shared/errors.ts";
import type { Attempt } from "../shared/schemas/shard.ts";
import {
  causeOfStop,
  errorAttempts,
  retryDelaySeconds,
  type StaleAttemptContext,
  staleAfterMs,
  whyLost,
} from "./attempts.ts";

const NOW = Date.parse("2030-01-01T12:00:00Z");
const iso = (msAgo: number) => new Date(NOW - msAgo).toISOString();

function attempt(over: Partial<Attempt> = {}): Attempt {
  return {
    v: 1,
    attemptId: "a-old",
    operationId: "op",
    shardId: "s000000",
    instanceId: "i-other",
    market: "spot",
    startedAt: iso(30_000),
    updatedAt: iso(5_000),
    messageId: "m-1",
    rowsDone: 10,
    cause: "running",
    ...over,
  };
}

const ctx = (over: Partial<StaleAttemptContext> = {}): StaleAttemptContext => ({
  now: NOW,
  instanceId: "i-me",
  live: new Set(),
  messageId: "m-1",
  receiveCount: 2,
  staleAfterMs: 120_000,
  ...over,
});

describe("whyLost", () => {
  it("relabels a running attempt of the same message once SQS delivered it again", () => {
    expect(whyLost(attempt(), ctx())).toMatch(/no heartbeat/);
  });

  it("leaves alone a live worker's attempt of another message (a straggler copy, a duplicate)", () => {
    expect(whyLost(attempt({ messageId: "m-2" }), ctx())).toBeUndefined();
    // The first delivery of the same message says nothing about earlier attempts.
    expect(whyLost(attempt(), ctx({ receiveCount: 1 }))).toBeUndefined();
  });

  it("relabels an attempt silent for longer than staleAfterMs", () => {
    expect(whyLost(attempt({ messageId: "m-2", updatedAt: iso(200_000) }), ctx())).toMatch(
      /no sign of life for 200 s/,
    );
    expect(
      whyLost(
        attempt({ messageId: undefined, updatedAt: undefined, startedAt: iso(300_000) }),
        ctx(),
      ),
    ).toMatch(/no sign of life/);
  });

  it("relabels an attempt of this instance that this process does not run (an earlier process)", () => {
    expect(whyLost(attempt({ instanceId: "i-me", messageId: "m-2" }), ctx())).toMatch(
      /process on this instance is gone/,
    );
    expect(
      whyLost(attempt({ instanceId: "i-me", messageId: "m-2" }), ctx({ live: new Set(["a-old"]) })),
    ).toBeUndefined();
  });

  it.each(["completed", "interrupted", "lost", "error"] as const)(
    "never touches a finished attempt (%s)",
    (cause) => {
      expect(whyLost(attempt({ cause, updatedAt: iso(900_000) }), ctx())).toBeUndefined();
    },
  );
});

describe("causeOfStop", () => {
  it("tells a lost shard, an interruption and an error apart", () => {
    const lost = new AbortController();
    lost.abort(new ShardLostError("receipt handle invalid"));
    const stopped = new AbortController();
    stopped.abort(new Error("worker stopping (interruption notice)"));
    expect(causeOfStop(lost.signal)).toBe("lost");
    expect(causeOfStop(stopped.signal)).toBe("interrupted");
    expect(causeOfStop(new AbortController().signal)).toBe("error");
  });
});

describe("poison counting", () => {
  const of = (...causes: Attempt["cause"][]) =>
    causes.map((cause, k) => attempt({ attemptId: `a${k}`, cause }));

  it("counts only error attempts", () => {
    expect(errorAttempts(of("interrupted", "interrupted", "error"))).toBe(1);
    expect(errorAttempts(of("lost", "lost", "lost", "lost", "interrupted"))).toBe(0);
    expect(errorAttempts(of("error", "interrupted", "error", "error"))).toBe(3);
  });

  it("backs off 2^n seconds, capped", () => {
    expect([1, 2, 3, 8, 9, 50].map((n) => retryDelaySeconds(n))).toEqual([2, 4, 8, 256, 300, 300]);
    expect(retryDelaySeconds(0)).toBe(2);
  });
});

describe("staleAfterMs", () => {
  it("is twice the visibility timeout, never under two minutes", () => {
    expect(staleAfterMs(60)).toBe(120_000);
    expect(staleAfterMs(30)).toBe(120_000);
    expect(staleAfterMs(300)).toBe(600_000);
  });
});
