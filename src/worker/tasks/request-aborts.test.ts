import { getEventListeners } from "node:events";
import { describe, expect, it } from "vitest";
import { RequestAborts } from "./request-aborts.ts";

/** Resolves when the handle aborts, with its reason. */
const aborted = (handle: { once(event: "abort", fn: () => void): unknown; reason: unknown }) =>
  new Promise<unknown>((resolve) => handle.once("abort", () => resolve(handle.reason)));

describe("RequestAborts", () => {
  it("ends a request on its own timeout, marked as timed out", async () => {
    const aborts = new RequestAborts(new AbortController().signal);
    const reason = await aborts.run(20, (handle) => aborted(handle));
    expect(reason).toBeInstanceOf(DOMException);
    expect((reason as DOMException).name).toBe("TimeoutError");
    await aborts.run(20, async (handle) => {
      expect(handle.aborted).toBe(false);
    });
  });

  it("ends every open request when the shard aborts, with the shard's reason, not as timeouts", async () => {
    const shard = new AbortController();
    const aborts = new RequestAborts(shard.signal);
    const handles: Array<{ timedOut: boolean }> = [];
    const running = Array.from({ length: 50 }, () =>
      aborts.run(60_000, (handle) => {
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
    const aborts = new RequestAborts(shard.signal);
    let finished: { aborted: boolean } | undefined;
    await aborts.run(60_000, async (handle) => {
      finished = handle;
    });
    shard.abort(new Error("stop"));
    expect(finished?.aborted).toBe(false);
    const late = await aborts.run(60_000, async (handle) => handle.aborted);
    expect(late).toBe(true);
  });
});
