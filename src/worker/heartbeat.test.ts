import { describe, expect, it } from "vitest";
import { FakeClock } from "../../test/support/fake-clock.ts";
import { ShardLostError } from "../shared/errors.ts";
import { silentLogger } from "../shared/logger.ts";
import { Heartbeat, isReceiptHandleGone, type VisibilityPort } from "./heartbeat.ts";

/** A queue that records each call's time and answers with `answer(call number)`. */
function recordingQueue(
  clock: FakeClock,
  answer: (n: number) => Error | undefined = () => undefined,
) {
  const calls: Array<{ at: number; handle: string; seconds: number }> = [];
  const queue: VisibilityPort = {
    changeVisibility: async (_url, handle, seconds) => {
      calls.push({ at: clock.now(), handle, seconds });
      const err = answer(calls.length);
      if (err) throw err;
    },
  };
  return { queue, calls };
}

function sqsError(name: string, message = "x"): Error {
  return Object.assign(new Error(message), { name });
}

describe("Heartbeat (fake clock)", () => {
  it("beats every third of the visibility timeout, always before the message would reappear", async () => {
    const clock = new FakeClock();
    const t0 = clock.now();
    const { queue, calls } = recordingQueue(clock);
    const heartbeat = new Heartbeat(
      { queue, logger: silentLogger(), clock },
      { visibilityTimeoutSeconds: 60 },
    );
    expect(heartbeat.intervalMs).toBe(20_000);
    heartbeat.track("m1", "q", "h1");
    await clock.advance(19_999);
    expect(calls).toHaveLength(0);
    await clock.advance(1);
    expect(calls).toEqual([{ at: t0 + 20_000, handle: "h1", seconds: 60 }]);
    await clock.advance(100_000);
    expect(calls.map((c) => c.at - t0)).toEqual([20_000, 40_000, 60_000, 80_000, 100_000, 120_000]);
    // Invisible all along: every beat lands before the previous visibility (60 s) runs out.
    let visibleAt = t0 + 60_000;
    for (const call of calls) {
      expect(call.at).toBeLessThan(visibleAt);
      visibleAt = call.at + call.seconds * 1000;
    }
    expect(heartbeat.beatsOf("m1")).toBe(6);
    heartbeat.close();
  });

  it("stops beating an untracked message and keeps the others", async () => {
    const clock = new FakeClock();
    const { queue, calls } = recordingQueue(clock);
    const heartbeat = new Heartbeat(
      { queue, logger: silentLogger(), clock },
      { visibilityTimeoutSeconds: 30 },
    );
    heartbeat.track("m1", "q", "h1");
    heartbeat.track("m2", "q", "h2");
    await clock.advance(10_000);
    heartbeat.untrack("m1");
    await clock.advance(30_000);
    expect(calls.filter((c) => c.handle === "h1")).toHaveLength(1);
    expect(calls.filter((c) => c.handle === "h2")).toHaveLength(4);
    heartbeat.close();
    await clock.advance(30_000);
    expect(calls).toHaveLength(5);
    expect(clock.pending).toBe(0);
  });

  it("reports a lost message at once when its receipt handle is no longer valid, and stops", async () => {
    const clock = new FakeClock();
    const { queue, calls } = recordingQueue(clock, (n) =>
      n === 2
        ? sqsError(
            "MessageNotInflight",
            "Message does not exist or is not available for visibility timeout change.",
          )
        : undefined,
    );
    const heartbeat = new Heartbeat(
      { queue, logger: silentLogger(), clock },
      { visibilityTimeoutSeconds: 60 },
    );
    const lost: ShardLostError[] = [];
    heartbeat.track("m1", "q", "h1", (err) => lost.push(err));
    await clock.advance(40_000);
    expect(lost).toHaveLength(1);
    expect(lost[0]).toBeInstanceOf(ShardLostError);
    expect(lost[0]?.message).toMatch(/no longer ours/);
    await clock.advance(120_000);
    expect(calls).toHaveLength(2);
    heartbeat.close();
  });

  it("retries a transient failure soon, doubling, and does not report it as lost", async () => {
    const clock = new FakeClock();
    const t0 = clock.now();
    const { queue, calls } = recordingQueue(clock, (n) =>
      n === 1 || n === 2 ? sqsError("ThrottlingException") : undefined,
    );
    const heartbeat = new Heartbeat(
      { queue, logger: silentLogger(), clock },
      { visibilityTimeoutSeconds: 60, retryMs: 1000 },
    );
    let lost = 0;
    heartbeat.track("m1", "q", "h1", () => lost++);
    await clock.advance(45_000);
    // 20 s fails, retried at 21 s (fails), 23 s (works), then back to every 20 s.
    expect(calls.map((c) => c.at - t0)).toEqual([20_000, 21_000, 23_000, 43_000]);
    expect(lost).toBe(0);
    heartbeat.close();
  });
});

describe("isReceiptHandleGone", () => {
  it.each([
    [sqsError("MessageNotInflight"), true],
    [sqsError("ReceiptHandleIsInvalid"), true],
    [
      Object.assign(new Error("gone"), {
        name: "Error",
        Code: "AWS.SimpleQueueService.MessageNotInflight",
      }),
      true,
    ],
    [
      sqsError(
        "InvalidParameterValue",
        "Value abc for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change.",
      ),
      true,
    ],
    [sqsError("InvalidParameterValue", "VisibilityTimeout must be at most 43200"), false],
    [sqsError("ThrottlingException"), false],
    [new Error("socket hang up"), false],
    ["nope", false],
  ])("%o → %s", (err, gone) => {
    expect(isReceiptHandleGone(err)).toBe(gone);
  });
});
