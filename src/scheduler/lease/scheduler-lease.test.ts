/** The lease decision and record builders: pure functions of the observed record and a clock. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LEASE_HISTORY_LENGTH, schedulerLeaseSchema } from "../../shared/schemas/lease.ts";
import {
  acquiredLease,
  decide,
  type LeaseObservation,
  releasedLease,
  renewedLease,
  tenuresOf,
} from "./scheduler-lease.ts";

const T0 = Date.parse("2030-01-01T00:00:00Z");
const DURATION = 30_000;
const POLL = 10_000;

function seen(holder: string, firstSeenAt: number, durationMs = DURATION): LeaseObservation {
  return { lease: acquiredLease(holder, T0, durationMs), etag: '"e1"', firstSeenAt };
}

describe("decide", () => {
  it("creates the record when there is none", () => {
    expect(decide(undefined, "b", T0, POLL)).toEqual({ kind: "create" });
  });

  it("waits while another holder's version is younger than its duration (own clock), polling", () => {
    expect(decide(seen("a", T0), "b", T0 + 1_000, POLL)).toEqual({
      kind: "wait",
      holder: "a",
      recheckAt: T0 + 1_000 + POLL,
    });
    // The last poll before expiry lands on the expiry itself.
    expect(decide(seen("a", T0), "b", T0 + 25_000, POLL)).toMatchObject({
      kind: "wait",
      recheckAt: T0 + DURATION,
    });
  });

  it("takes over only once the same version has been seen for the holder's whole duration", () => {
    expect(decide(seen("a", T0), "b", T0 + DURATION - 1, POLL).kind).toBe("wait");
    expect(decide(seen("a", T0), "b", T0 + DURATION, POLL)).toEqual({
      kind: "take-over",
      why: "expired",
    });
    // The holder's duration counts, not the reader's.
    expect(decide(seen("a", T0, 90_000), "b", T0 + 60_000, POLL).kind).toBe("wait");
  });

  it("ignores the record's own expiry time: a fast clock elsewhere cannot cause an early takeover", () => {
    // Written by a holder whose clock is an hour behind: its expiresAt is long past here.
    const lease = acquiredLease("a", T0 - 3_600_000, DURATION);
    expect(decide({ lease, etag: '"e"', firstSeenAt: T0 }, "b", T0 + 1, POLL).kind).toBe("wait");
  });

  it("takes over a released lease at once, and its own record as a renewal", () => {
    const released = releasedLease(acquiredLease("a", T0, DURATION), T0 + 5);
    expect(decide({ lease: released, etag: '"e"', firstSeenAt: T0 }, "b", T0 + 6, POLL)).toEqual({
      kind: "take-over",
      why: "released",
    });
    expect(decide(seen("b", T0), "b", T0 + 1, POLL)).toEqual({ kind: "take-over", why: "ours" });
  });
});

describe("lease records", () => {
  it("renewal extends the tenure; takeover moves it into history", () => {
    const a = acquiredLease("a", T0, DURATION);
    const renewed = renewedLease(a, T0 + 10_000, DURATION);
    expect(renewed).toMatchObject({
      holder: "a",
      acquiredAt: a.acquiredAt,
      expiresAt: new Date(T0 + 40_000).toISOString(),
      renewals: 1,
    });
    const b = acquiredLease("b", T0 + 80_000, DURATION, renewed);
    expect(b.history).toEqual([
      { holder: "a", acquiredAt: a.acquiredAt, expiresAt: renewed.expiresAt, renewals: 1 },
    ]);
    expect(tenuresOf(b).map((t) => t.holder)).toEqual(["a", "b"]);
    expect(() => schedulerLeaseSchema.parse(b)).not.toThrow();
  });

  it("keeps at most LEASE_HISTORY_LENGTH past tenures, oldest dropped, every record valid", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 60 }), (steps) => {
        let lease = acquiredLease("h0", T0, DURATION);
        let now = T0;
        let takeovers = 0;
        for (const step of steps) {
          now += 1_000;
          if (step === 0) {
            takeovers++;
            lease = acquiredLease(`h${takeovers}`, now, DURATION, lease);
          } else {
            lease = renewedLease(lease, now, DURATION);
          }
          schedulerLeaseSchema.parse(lease);
        }
        expect(lease.history.length).toBe(Math.min(takeovers, LEASE_HISTORY_LENGTH));
        const holders = tenuresOf(lease).map((t) => t.holder);
        expect(holders.at(-1)).toBe(`h${takeovers}`);
        // Consecutive holders, in order.
        holders.forEach((h, i) => {
          expect(h).toBe(`h${takeovers - holders.length + 1 + i}`);
        });
      }),
    );
  });
});
