import { getEventListeners } from "node:events";
import { describe, expect, it } from "vitest";
import { type RequestAbort, RequestAborts } from "./request-aborts.ts";

/** Resolves when the handle aborts, with its reason. */
const aborted = (handle: RequestAbort) =>
  new Promise<unknown>((resolve) => handle.once("abort", () => resolve(handle.reason)));

describe("RequestAborts", () => {
  it("ends a request on its own timeout, marked as timed out", async () => {
    const aborts = new RequestAborts(new AbortController().signal, 20);
    let handle: RequestAbort | undefined;
    const reason = await aborts.run((h) => {
      handle = h;
      return aborted(h);
    });
    expect(reason).toBeInstanceOf(DOMException);
    expect((reason as DOMException).name).toBe("TimeoutError");
    expect(handle?.timedOut).toBe(true);
    await aborts.run(async (h) => {
      expect(h.aborted).toBe(false);
    });
  });

  it("times out each of several requests started apart after its own timeout, not the first one's", async () => {
    const aborts = new RequestAborts(new AbortController().signal, 60);
    const started = performance.now();
    const ended: number[] = [];
    const one = (delayMs: number) =>
      new Promise<void>((resolve) => setTimeout(resolve, delayMs)).then(() =>
        aborts.run(async (h) => {
          await aborted(h);
          ended.push(performance.now() - started - delayMs);
        }),
      );
    // A request that finishes on its own in between leaves the others' deadlines as they were.
    await Promise.all([one(0), one(40), aborts.run(async () => {}), one(80)]);
    expect(ended).toHaveLength(3);
    // Never before its own timeout (timers may be late on a loaded machine, not early).
    for (const elapsed of ended) expect(elapsed).toBeGreaterThanOrEqual(59);
  });

  it("ends every open request when the shard aborts, with the shard's reason, not as timeouts", async () => {
    const shard = new AbortController();
    const aborts = new RequestAborts(shard.signal, 60_000);
    const handles: RequestAbort[] = [];
    const running = Array.from({ length: 50 }, () =>
      aborts.run((handle) => {
        handles.push(handle);
        return aborted(handle);
      }),
    );
    // One listener on the shard's signal for the whole batch, however many requests are open.
    expect(getEventListeners(shard.signal, "abort")).toHaveLength(1);
    const stop = new Error("shard stopped");
    shard.abort(stop);
    expect(await Promise.all(running)).toEqual(Array.from({ length: 50 }, () => stop));
    expect(handles.every((h) => !h.timedOut)).toBe(true);
  });

  it("leaves finished requests alone and starts new ones aborted once the shard is", async () => {
    const shard = new AbortController();
    const aborts = new RequestAborts(shard.signal, 60_000);
    let finished: RequestAbort | undefined;
    await aborts.run(async (handle) => {
      finished = handle;
    });
    shard.abort(new Error("stop"));
    expect(finished?.aborted).toBe(false);
    const late = await aborts.run(async (handle) => handle.aborted);
    expect(late).toBe(true);
  });

  it("never keeps the process alive with its batch timer, armed or re-armed", async () => {
    // Node lists only ref'd timers as active "Timeout" resources; each count is compared with
    // one taken synchronously beside it, since other timers of the process come and go.
    const refTimers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const aborts = new RequestAborts(new AbortController().signal, 1_000);
    const beforeArm = refTimers();
    const first = aborts.open();
    expect(refTimers()).toBe(beforeArm);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const second = aborts.open();
    // The first times out; the timer is re-armed for the second one's deadline.
    await new Promise<void>((resolve) => first.once("abort", () => resolve()));
    expect(second.aborted).toBe(false);
    const rearmed = refTimers();
    aborts.close(second);
    expect(refTimers()).toBe(rearmed);
  });
});
