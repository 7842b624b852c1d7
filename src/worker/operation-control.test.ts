import { describe, expect, it } from "vitest";
import { lifecycleStatuses } from "../shared/schemas/operation.ts";
import {
  isControlStop,
  OperationControl,
  PAUSED_RELEASE_S,
  stopFor,
  stopOutcome,
} from "./operation-control.ts";

describe("operation control in the worker", () => {
  it("stops shards only of a paused or cancelled operation", () => {
    const stops = Object.fromEntries(lifecycleStatuses.map((s) => [s, stopFor(s)]));
    expect(stops).toMatchObject({
      paused: "pause",
      cancelling: "cancel",
      cancelled: "cancel",
      running: undefined,
      merging: undefined,
    });
  });

  it("aborts its signal on a pause and gives later shards a fresh one on resume", () => {
    const control = new OperationControl();
    control.update("running", 1);
    const before = control.signal;
    expect(before.aborted).toBe(false);
    control.update("paused", 2);
    expect(before.aborted).toBe(true);
    expect(before.reason).toEqual({ stop: "pause", status: "paused" });
    expect(isControlStop(before.reason)).toBe(true);
    control.update("paused", 3); // still paused: the same stop, not a new one
    expect(control.signal).toBe(before);
    control.update("running", 4);
    expect(control.signal.aborted).toBe(false);
    expect(control.checkedAt).toBe(4);
  });

  it("deletes a cancelled operation's message and releases a paused one's for later", () => {
    expect(stopOutcome({ stop: "cancel", status: "cancelling" })).toEqual({ kind: "delete" });
    expect(stopOutcome({ stop: "pause", status: "paused" })).toMatchObject({
      kind: "release",
      afterSeconds: PAUSED_RELEASE_S,
      why: "interrupted",
    });
    expect(isControlStop(new Error("x"))).toBe(false);
  });
});
