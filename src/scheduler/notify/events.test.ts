/** Which events are due: a pure function of manifest, subscriptions, records and time. */
import { describe, expect, it } from "vitest";
import type { Manifest } from "../../shared/schemas/operation.ts";
import { dueEvents, reachedEvents, subscriptionsOf } from "./events.ts";

const T0 = Date.parse("2026-12-01T10:00:00.000Z");
const at = (s: number) => new Date(T0 + s * 1000).toISOString();

function manifest(over: Partial<Manifest>): Manifest {
  return {
    v: 1,
    id: "op-1",
    status: "queued",
    spec: {
      version: 1,
      task: { name: "transform", options: {} },
      shardSize: 10,
      toleratedFailurePercent: 0,
    },
    input: { key: "k", filename: "f.csv", format: "csv", bytes: 1 },
    headers: [],
    createdAt: at(0),
    updatedAt: at(0),
    ...over,
  };
}

describe("notification events", () => {
  it("reads accepted, started and the final status from the manifest, in order", () => {
    expect(reachedEvents(manifest({ status: "splitting" })).map((e) => e.event)).toEqual([
      "accepted",
    ]);
    expect(
      reachedEvents(manifest({ status: "running", startedAt: at(5) })).map((e) => e.event),
    ).toEqual(["accepted", "started"]);
    // Failed while splitting: never started.
    expect(reachedEvents(manifest({ status: "failed", finishedAt: at(9) }))).toEqual([
      { event: "accepted", at: at(0) },
      { event: "failed", at: at(9) },
    ]);
    expect(
      reachedEvents(manifest({ status: "cancelled", startedAt: at(5), updatedAt: at(7) })).at(-1),
    ).toEqual({ event: "cancelled", at: at(7) });
  });

  it("the spec's subscription and the deployment's, each with its own events", () => {
    const m = manifest({
      status: "succeeded",
      startedAt: at(5),
      finishedAt: at(60),
      spec: {
        version: 1,
        task: { name: "transform", options: {} },
        shardSize: 10,
        toleratedFailurePercent: 0,
        notify: { email: ["a@example.com"], on: ["succeeded"] },
      },
    });
    const subs = subscriptionsOf(m, { webhook: "https://ops.example/h", on: ["accepted"] });
    expect(subs.map((s) => s.source)).toEqual(["spec", "deployment"]);
    const due = dueEvents(m, subs, new Set(["accepted"]), T0 + 61_000, 3_600_000);
    expect(due.map((d) => [d.event, d.to.map((s) => s.source), d.stale])).toEqual([
      ["succeeded", ["spec"], false],
    ]);
    expect(subscriptionsOf(manifest({}), { email: [] })).toEqual([]);
  });

  it("an event first seen after maxAgeMs is stale (recorded as skipped, not sent late)", () => {
    const m = manifest({ status: "running", startedAt: at(100) });
    const subs = subscriptionsOf(m, { webhook: "https://ops.example/h" });
    const due = dueEvents(m, subs, new Set(), T0 + 150_000, 60_000);
    expect(due.map((d) => [d.event, d.stale])).toEqual([
      ["accepted", true],
      ["started", false],
    ]);
  });
});
