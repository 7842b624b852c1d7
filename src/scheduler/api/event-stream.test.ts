import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { operationView } from "../../../test/support/views.ts";
import type { OperationView } from "../../shared/contracts/operations.ts";
import {
  eventsSince,
  formatPosition,
  parsePosition,
  START,
  type StreamPosition,
  sourceEventSince,
} from "./event-stream.ts";

function view(over: Partial<OperationView> & { done?: number; fleet?: number }): OperationView {
  const { done = 0, fleet = 0, ...rest } = over;
  return operationView({
    rows: { total: 100, done, failed: 0 },
    shards: { total: 10, pending: 10 - done / 10, running: 0, done: done / 10, failed: 0 },
    createdAt: "2026-12-01T00:00:00.000Z",
    startedAt: null,
    events: Array.from({ length: fleet }, (_, i) => ({
      at: "2026-12-01T00:00:00.000Z",
      kind: "launch-requested" as const,
      message: `e${i}`,
    })),
    ...rest,
  });
}

describe("event stream positions", () => {
  it("an id parses back to the position it was made from; anything else replays from the start", () => {
    const p: StreamPosition = { fleetNext: 7, status: "waiting-for-capacity", progress: "30_3_1" };
    expect(parsePosition(formatPosition(p))).toEqual(p);
    expect(parsePosition("garbage")).toEqual(START);
    expect(parsePosition(undefined)).toEqual(START);
  });

  it("however the client's reconnections fall, it receives every fleet event once and ends on the newest status", () => {
    // Snapshots of a growing operation; the client reads some of them, disconnecting and
    // resuming from its last id in between.
    fc.assert(
      fc.property(fc.array(fc.boolean(), { minLength: 1, maxLength: 12 }), (reconnects) => {
        let pos = START;
        const seqs: number[] = [];
        let last = "";
        reconnects.forEach((reconnect, k) => {
          const snapshot = view({ done: k * 10 > 100 ? 100 : k * 10, fleet: k * 2 });
          if (reconnect) pos = parsePosition(last || undefined);
          const { events, position } = eventsSince(pos, snapshot, 0);
          for (const e of events) {
            if (e.event === "fleet") seqs.push((e.data as { seq: number }).seq);
            last = e.id;
          }
          pos = position;
        });
        const final = view({ status: "succeeded", done: 100, fleet: 30 });
        const { events } = eventsSince(parsePosition(last || undefined), final, 0);
        for (const e of events) if (e.event === "fleet") seqs.push((e.data as { seq: number }).seq);
        expect(seqs).toEqual(Array.from({ length: 30 }, (_, i) => i));
        expect(events.at(-1)).toMatchObject({ event: "status", data: { status: "succeeded" } });
      }),
    );
  });

  it("numbers fleet events past those the record dropped, and skips what can no longer be replayed", () => {
    const snapshot = view({ fleet: 3 });
    const { events } = eventsSince({ fleetNext: 2 }, snapshot, 5);
    expect(
      events.filter((e) => e.event === "fleet").map((e) => (e.data as { seq: number }).seq),
    ).toEqual([5, 6, 7]);
  });
});

describe("the source event", () => {
  const origin = {
    origin: "https://s.example",
    workers: 2,
    requestsPerSecond: 48.5,
    budget: 50,
    concurrency: 36,
    inFlight: 20,
    requests: 900,
    throttled: 3,
    failed: 0,
    latencyMs: 120,
    instances: 1,
  };

  it("is sent when what the source sees changed, once, and cleared once the workers left", () => {
    expect(sourceEventSince(undefined, view({}))).toBeUndefined();
    const first = sourceEventSince(undefined, view({ source: [origin] }));
    expect(first?.event).toEqual({ event: "source", data: { origins: [origin] } });
    expect(sourceEventSince(first?.key, view({ source: [origin] }))).toBeUndefined();
    const faster = sourceEventSince(first?.key, view({ source: [{ ...origin, concurrency: 40 }] }));
    expect(faster?.event.data.origins[0]?.concurrency).toBe(40);
    expect(sourceEventSince(faster?.key, view({ source: [] }))?.event.data).toEqual({
      origins: [],
    });
  });
});
