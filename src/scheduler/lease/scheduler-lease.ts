/**
 * The scheduler lease record: the only code that builds and writes `keys.schedulerLease()`.
 *
 * Every write is conditional: the first holder creates the record with `If-None-Match: *`;
 * renewals, releases and takeovers replace it with `If-Match` on the ETag that was read. A
 * write that answers 412 changed nothing: the caller re-reads and decides again (`decide`).
 *
 * Expiry is judged on the reader's own clock, as Kubernetes leader election does: a standby
 * may take over once the record has stayed at the same ETag for the holder's `durationMs`
 * since the standby first saw that ETag. The holder stops acting well before that (see
 * ./leadership.ts), so clock skew between machines cannot let two act at once.
 */

import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { keys } from "../../shared/keys.ts";
import type { ObjectStore } from "../../shared/object-store.ts";
import {
  LEASE_HISTORY_LENGTH,
  type LeaseTenure,
  type SchedulerLease,
  schedulerLeaseSchema,
} from "../../shared/schemas/lease.ts";

/** A unique id for this process start: `host/pid/random`. */
export function newHolderId(): string {
  return `${hostname()}/${process.pid}/${randomBytes(4).toString("hex")}`;
}

/** The record as read, with the ETag a conditional write must name. */
export interface ReadLease {
  readonly lease: SchedulerLease;
  readonly etag: string;
}

/** What the reader has seen of the record: the version, and when it first saw it (own clock). */
export interface LeaseObservation extends ReadLease {
  readonly firstSeenAt: number;
}

/** What a scheduler should do about the lease now. */
export type LeaseDecision =
  /** No record yet: create it. */
  | { readonly kind: "create" }
  /** Replace the record with our tenure (If-Match on the observed ETag). */
  | { readonly kind: "take-over"; readonly why: "expired" | "released" | "ours" }
  /** Someone else holds it: look again by `recheckAt` (own clock). */
  | { readonly kind: "wait"; readonly holder: string; readonly recheckAt: number };

/**
 * Pure: what `self` should do, given the record as last observed (undefined: none) and the
 * time on its own clock. `pollMs` bounds the wait, so a renewal is noticed within one poll.
 */
export function decide(
  observed: LeaseObservation | undefined,
  self: string,
  now: number,
  pollMs: number,
): LeaseDecision {
  if (!observed) return { kind: "create" };
  const { lease, firstSeenAt } = observed;
  if (lease.holder === self) return { kind: "take-over", why: "ours" };
  if (lease.released) return { kind: "take-over", why: "released" };
  const expiresAt = firstSeenAt + lease.durationMs;
  if (now >= expiresAt) return { kind: "take-over", why: "expired" };
  return { kind: "wait", holder: lease.holder, recheckAt: Math.min(expiresAt, now + pollMs) };
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function tenureOf(lease: SchedulerLease): LeaseTenure {
  return {
    holder: lease.holder,
    acquiredAt: lease.acquiredAt,
    expiresAt: lease.expiresAt,
    renewals: lease.renewals,
  };
}

/** Pure: a new tenure for `holder` from `now`, the previous one (if any) moved to history. */
export function acquiredLease(
  holder: string,
  now: number,
  durationMs: number,
  previous?: SchedulerLease,
): SchedulerLease {
  return {
    v: 1,
    holder,
    acquiredAt: iso(now),
    expiresAt: iso(now + durationMs),
    renewals: 0,
    durationMs,
    history: previous ? [...previous.history, tenureOf(previous)].slice(-LEASE_HISTORY_LENGTH) : [],
  };
}

/** Pure: the same tenure, extended to `now + durationMs`. */
export function renewedLease(
  lease: SchedulerLease,
  now: number,
  durationMs: number,
): SchedulerLease {
  return {
    ...lease,
    expiresAt: iso(now + durationMs),
    renewals: lease.renewals + 1,
    durationMs,
  };
}

/** Pure: the tenure ended now on purpose; a standby may take over at once. */
export function releasedLease(lease: SchedulerLease, now: number): SchedulerLease {
  return { ...lease, expiresAt: iso(now), released: true };
}

/** Every tenure the record knows, oldest first, the current one last. */
export function tenuresOf(lease: SchedulerLease): LeaseTenure[] {
  return [...lease.history, tenureOf(lease)];
}

/** Reads and conditionally writes the one lease record of a bucket. */
export class SchedulerLeaseRecord {
  readonly #store: ObjectStore;

  constructor(deps: { store: ObjectStore }) {
    this.#store = deps.store;
  }

  /** The record and its ETag, or undefined when no scheduler ever held the lease. */
  async read(signal?: AbortSignal): Promise<ReadLease | undefined> {
    const got = await this.#store.getJsonVersioned(
      keys.schedulerLease(),
      schedulerLeaseSchema,
      signal,
    );
    return got && { lease: got.value, etag: got.etag };
  }

  /**
   * Writes `lease` if the record is still at `etag` (undefined: if there is none). Returns the
   * new ETag, or undefined when someone else wrote first (re-read and decide again).
   */
  async write(
    lease: SchedulerLease,
    etag: string | undefined,
    signal?: AbortSignal,
  ): Promise<string | undefined> {
    const key = keys.schedulerLease();
    if (etag !== undefined) {
      const put = await this.#store.putJsonIfMatch(key, schedulerLeaseSchema, lease, etag, signal);
      return put.outcome === "written" ? put.etag : undefined;
    }
    if (!(await this.#store.putJsonIfAbsent(key, schedulerLeaseSchema, lease, signal)))
      return undefined;
    // Created: its ETag for the first renewal. Nobody else writes it before it expires.
    const created = await this.#store.getJsonVersioned(key, schedulerLeaseSchema, signal);
    return created?.value.holder === lease.holder ? created.etag : undefined;
  }
}
