import { describe, expect, it } from "vitest";
import { FinishedOperations } from "./finished-operations.ts";

describe("FinishedOperations", () => {
  it("holds an operation until revived (delete) or until its recheck time has passed", () => {
    let now = 1_000;
    const finished = new FinishedOperations({ clock: { now: () => now } }, { recheckMs: 500 });
    finished.add("op-a");
    finished.add("op-b");
    expect(finished.has("op-a")).toBe(true);
    finished.delete("op-b");
    expect(finished.has("op-b")).toBe(false);
    now += 499;
    expect(finished.has("op-a")).toBe(true);
    now += 1;
    // Read again: a retry accepted by another process is seen.
    expect(finished.has("op-a")).toBe(false);
    expect(finished.size).toBe(0);
    finished.add("op-a");
    expect(finished.has("op-a")).toBe(true);
  });
});
