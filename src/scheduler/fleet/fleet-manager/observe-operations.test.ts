import { describe, expect, it } from "vitest";
import { emptyFleetMemory } from "../policy/types.ts";
import { seedWaiting } from "./observe-operations.ts";

describe("seedWaiting: a recorded capacity wait after a restart", () => {
  const wait = { since: "2026-01-01T00:00:00.000Z", reason: "no spot capacity" };

  it("counts the deadline from when the wait began", () => {
    const memory = seedWaiting(emptyFleetMemory(), "op-1", wait);
    expect(memory.operations["op-1"]).toEqual({
      unfulfilledSince: Date.parse(wait.since),
      waiting: wait.reason,
    });
  });

  it("counts it from the last resume when that is later: the deadline does not run while paused", () => {
    const resumedAt = "2026-01-01T01:00:00.000Z";
    const memory = seedWaiting(emptyFleetMemory(), "op-1", wait, resumedAt);
    expect(memory.operations["op-1"]?.unfulfilledSince).toBe(Date.parse(resumedAt));
    const earlier = seedWaiting(emptyFleetMemory(), "op-1", wait, "2025-12-31T00:00:00.000Z");
    expect(earlier.operations["op-1"]?.unfulfilledSince).toBe(Date.parse(wait.since));
  });
});
