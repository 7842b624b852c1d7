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

  it("shared by two loops: after the lapse one reads it again, the other waits for its answer", () => {
    let now = 1_000;
    const finished = new FinishedOperations({ clock: { now: () => now } }, { recheckMs: 500 });
    finished.add("op-a");
    finished.add("op-b");
    now += 500;
    // The scheduler's pass comes first: it reads both again; the fleet manager's does not.
    expect(finished.has("op-a")).toBe(false);
    expect(finished.has("op-b")).toBe(false);
    expect(finished.has("op-a")).toBe(true);
    expect(finished.has("op-b")).toBe(true);
    // op-a is still finished; op-b was retried elsewhere and runs again.
    finished.add("op-a");
    finished.delete("op-b");
    expect(finished.has("op-a")).toBe(true);
    expect(finished.has("op-b")).toBe(false);
    expect(finished.has("op-b")).toBe(false);
  });

  it("a recheck never settled (the read failed) is claimed again after the recheck time", () => {
    let now = 1_000;
    const finished = new FinishedOperations({ clock: { now: () => now } }, { recheckMs: 500 });
    finished.add("op-a");
    now += 500;
    expect(finished.has("op-a")).toBe(false);
    now += 499;
    expect(finished.has("op-a")).toBe(true);
    now += 1;
    expect(finished.has("op-a")).toBe(false);
    expect(finished.has("op-a")).toBe(true);
  });

  it("retain forgets operations no listing names any more (deleted), entries and claims alike", () => {
    let now = 1_000;
    const finished = new FinishedOperations({ clock: { now: () => now } }, { recheckMs: 500 });
    finished.add("op-kept");
    finished.add("op-gone");
    finished.add("op-claimed");
    now += 500;
    // A loop claimed op-claimed's recheck, then found its manifest gone: the claim is not settled.
    expect(finished.has("op-claimed")).toBe(false);
    expect(finished.has("op-claimed")).toBe(true);
    finished.add("op-kept");
    finished.retain(new Set(["op-kept", "op-new"]));
    expect([...finished]).toEqual(["op-kept"]);
    expect(finished.has("op-gone")).toBe(false);
    // No claim left behind: the next caller is not told it is being read elsewhere.
    expect(finished.has("op-claimed")).toBe(false);
    expect(finished.has("op-kept")).toBe(true);
  });
});
