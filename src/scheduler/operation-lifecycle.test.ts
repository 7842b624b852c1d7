/** The transition table as data: its shape, checked without S3 (the races: *.integ.test.ts). */
import { describe, expect, it } from "vitest";
import {
  type LifecycleStatus,
  lifecycleStatuses,
  TERMINAL_STATUSES,
} from "../shared/schemas/operation.ts";
import {
  allows,
  INITIAL_STATUS,
  LIFECYCLE_EVENT_NAMES,
  LIFECYCLE_EVENTS,
} from "./operation-lifecycle.ts";

const terminal = (s: LifecycleStatus) => TERMINAL_STATUSES.has(s);

function reachableFrom(start: LifecycleStatus): Set<LifecycleStatus> {
  const seen = new Set<LifecycleStatus>([start]);
  const todo = [start];
  for (let s = todo.pop(); s !== undefined; s = todo.pop()) {
    for (const e of LIFECYCLE_EVENT_NAMES) {
      const to = LIFECYCLE_EVENTS[e].to;
      if (allows(e, s) && !seen.has(to)) {
        seen.add(to);
        todo.push(to);
      }
    }
  }
  return seen;
}

describe("LIFECYCLE_EVENTS", () => {
  it("lets nothing leave a terminal state but a retry of failed rows", () => {
    for (const s of lifecycleStatuses.filter(terminal)) {
      const leaving = LIFECYCLE_EVENT_NAMES.filter((e) => allows(e, s));
      // Issue 14 item 3: an operation that ended with error rows may run them again.
      expect(leaving).toEqual(s === "succeeded-with-failures" || s === "failed" ? ["retry"] : []);
    }
    expect(LIFECYCLE_EVENTS.retry.to).toBe("running");
  });

  it("reaches every state from queued, and a terminal state from every live one", () => {
    expect([...reachableFrom(INITIAL_STATUS)].sort()).toEqual([...lifecycleStatuses].sort());
    for (const s of lifecycleStatuses.filter((x) => !terminal(x))) {
      expect([...reachableFrom(s)].some(terminal)).toBe(true);
      // Every live state can be failed (a split, merge or control step that fails for good).
      expect(allows("fail", s)).toBe(true);
    }
  });

  it("walks the scheduler's path queued → splitting → running → merging → succeeded", () => {
    const path = ["split", "splitDone", "merge", "succeed"] as const;
    let s: LifecycleStatus = INITIAL_STATUS;
    for (const e of path) {
      expect(allows(e, s)).toBe(true);
      s = LIFECYCLE_EVENTS[e].to;
    }
    expect(s).toBe("succeeded");
  });

  it("never fails a merging operation for lack of capacity (every shard is committed by then)", () => {
    expect(allows("failForCapacity", "merging")).toBe(false);
    expect(allows("failForCapacity", "running")).toBe(true);
  });

  it("never moves to a state it does not leave from: no event goes back to queued", () => {
    expect(LIFECYCLE_EVENT_NAMES.map((e) => LIFECYCLE_EVENTS[e].to)).not.toContain("queued");
  });

  it("cancels from every live state, the merge included, and pauses only a running operation", () => {
    for (const s of lifecycleStatuses.filter((x) => !terminal(x) && x !== "cancelling")) {
      expect(allows("cancel", s)).toBe(true);
    }
    expect(allows("cancel", "cancelling")).toBe(false);
    expect(lifecycleStatuses.filter((s) => allows("pause", s))).toEqual(["running"]);
    expect(lifecycleStatuses.filter((s) => allows("resume", s))).toEqual(["paused"]);
    expect(LIFECYCLE_EVENTS.splitCancelled).toEqual({ from: ["cancelling"], to: "cancelling" });
  });
});
