/**
 * Leadership: this scheduler process acts on the bucket only while it holds the scheduler
 * lease (./scheduler-lease.ts).
 *
 *   idle → standby ⇄ active → stopping → stopped
 *
 * Standby: read the record every `renewEveryMs` and take over once it is free, released, or
 * has not changed for the holder's duration (own clock). Active: `work` runs with a `Tenure`;
 * the record is renewed every `renewEveryMs` (If-Match on the last ETag). The tenure ends,
 * its signal aborting at once, when a renewal finds another holder (412, then a re-read) or
 * when no renewal has succeeded for `durationMs - renewEveryMs` since the last one was sent:
 * that is before any standby can see the lease expire (at least `durationMs` after that
 * write, on its clock), so the two never act at once. Then `work` is stopped and the process
 * stands by again. `stop()` ends the tenure, stops `work` and releases the lease, so a standby
 * takes over within one poll instead of one lease duration.
 */
import type { Clock } from "../../shared/clock.ts";
import { LeaseLostError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import type { SchedulerLease } from "../../shared/schemas/lease.ts";
import {
  acquiredLease,
  decide,
  type LeaseObservation,
  type ReadLease,
  releasedLease,
  renewedLease,
  type SchedulerLeaseRecord,
} from "./scheduler-lease.ts";

/** This process's time as the active scheduler. */
export interface Tenure {
  readonly holder: string;
  /** Aborts (with a LeaseLostError) the moment this process may no longer act. */
  readonly signal: AbortSignal;
  /** Throws a LeaseLostError once the tenure is over: call it before each write pass. */
  check(): void;
}

/** Starts what only the active scheduler may run; returns how to stop it. */
export type ActiveWork = (tenure: Tenure) => { stop(): Promise<void> };

export type LeadershipState = "idle" | "standby" | "active" | "stopping" | "stopped";

export interface LeadershipDeps {
  record: SchedulerLeaseRecord;
  clock: Clock;
  logger: Logger;
}

export interface LeadershipOptions {
  /** This process's holder id (`newHolderId()`). */
  holder: string;
  /** How long the lease lasts without a renewal (SHARDFLEET_LEASE_S). */
  durationMs: number;
  /** Renewal period, and a standby's poll. At most half the duration. @default durationMs / 3 */
  renewEveryMs?: number;
}

export class Leadership {
  readonly #record: SchedulerLeaseRecord;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #holder: string;
  readonly #durationMs: number;
  readonly #renewEveryMs: number;
  readonly #abort = new AbortController();
  #state: LeadershipState = "idle";
  #loop: Promise<void> | undefined;
  /** Resolves `start` once the record has been looked at. */
  #firstLook: (() => void) | undefined;
  /** Holders already reported at info while standing by (then at debug). */
  readonly #reported = new Set<string>();

  constructor(deps: LeadershipDeps, options: LeadershipOptions) {
    this.#record = deps.record;
    this.#clock = deps.clock;
    this.#logger = deps.logger.child({ holder: options.holder });
    this.#holder = options.holder;
    this.#durationMs = options.durationMs;
    this.#renewEveryMs = options.renewEveryMs ?? Math.round(options.durationMs / 3);
    if (!(this.#renewEveryMs > 0 && this.#renewEveryMs * 2 <= this.#durationMs)) {
      throw new RangeError("renewEveryMs must be positive and at most half of durationMs");
    }
  }

  get state(): LeadershipState {
    return this.#state;
  }

  get holder(): string {
    return this.#holder;
  }

  /**
   * Stands by until the lease is ours, then runs `work` for as long as it stays ours. Resolves
   * with the state after the first look at the record: `active` (work started) or `standby`
   * (someone else holds it, or the record could not be read yet).
   */
  start(work: ActiveWork): Promise<LeadershipState> {
    if (this.#state !== "idle") throw new Error(`leadership cannot start: it is ${this.#state}`);
    this.#state = "standby";
    const first = new Promise<LeadershipState>((resolve) => {
      this.#firstLook = () => {
        this.#firstLook = undefined;
        resolve(this.#state);
      };
    });
    this.#loop = this.#run(work, this.#abort.signal);
    return first;
  }

  /** Ends any tenure (its work stopped), releases the lease, and stops standing by. */
  async stop(): Promise<void> {
    if (this.#state === "idle" || this.#state === "stopped") {
      this.#state = "stopped";
      return;
    }
    this.#state = "stopping";
    this.#abort.abort(new Error("scheduler stopping"));
    await this.#loop;
    this.#firstLook?.();
    this.#state = "stopped";
  }

  async #run(work: ActiveWork, signal: AbortSignal): Promise<void> {
    let observed: LeaseObservation | undefined;
    while (!signal.aborted) {
      try {
        observed = this.#observe(observed, await this.#record.read(signal));
        const now = this.#clock.now();
        const decision = decide(observed, this.#holder, now, this.#renewEveryMs);
        if (decision.kind === "wait") {
          this.#standingBy(decision.holder);
          this.#firstLook?.();
          await this.#clock.sleep(Math.max(1, decision.recheckAt - now), signal);
          continue;
        }
        const lease =
          decision.kind === "create"
            ? acquiredLease(this.#holder, now, this.#durationMs)
            : decision.why === "ours" && observed
              ? renewedLease(observed.lease, now, this.#durationMs)
              : acquiredLease(this.#holder, now, this.#durationMs, observed?.lease);
        const etag = await this.#record.write(lease, observed?.etag, signal);
        // Someone else wrote first: read again and decide again.
        if (etag === undefined) continue;
        this.#logger.info(
          {
            how: decision.kind === "create" ? "created" : decision.why,
            previous: observed?.lease.holder,
            acquiredAt: lease.acquiredAt,
            durationMs: this.#durationMs,
          },
          "scheduler lease acquired: this scheduler is the active one",
        );
        await this.#serve(work, { lease, etag }, now, signal);
        observed = undefined;
      } catch (err) {
        if (signal.aborted) break;
        this.#logger.warn({ err }, "scheduler lease: read or write failed; trying again");
        this.#firstLook?.();
        await this.#clock.sleep(Math.min(this.#renewEveryMs, 1_000), signal).catch(() => undefined);
      }
    }
  }

  /** Keeps when this version of the record was first seen: expiry counts from there. */
  #observe(
    previous: LeaseObservation | undefined,
    read: ReadLease | undefined,
  ): LeaseObservation | undefined {
    if (!read) return undefined;
    if (previous && previous.etag === read.etag) return previous;
    return { ...read, firstSeenAt: this.#clock.now() };
  }

  #standingBy(holder: string): void {
    this.#state = "standby";
    if (this.#reported.has(holder)) {
      this.#logger.debug({ activeHolder: holder }, "standing by");
      return;
    }
    this.#reported.add(holder);
    this.#logger.info(
      { activeHolder: holder, durationMs: this.#durationMs },
      "standing by: another scheduler holds the lease; taking over if it lapses",
    );
  }

  /** Runs `work` while the lease is ours; returns once the tenure has ended and work stopped. */
  async #serve(
    work: ActiveWork,
    held: ReadLease,
    sentAt: number,
    outer: AbortSignal,
  ): Promise<void> {
    const validForMs = this.#durationMs - this.#renewEveryMs;
    let validUntil = sentAt + validForMs;
    const ended = new AbortController();
    const end = (reason: string) => {
      if (!ended.signal.aborted) ended.abort(new LeaseLostError(reason));
    };
    const onStop = () => end("scheduler stopping");
    outer.addEventListener("abort", onStop, { once: true });
    const tenure: Tenure = {
      holder: this.#holder,
      signal: ended.signal,
      check: () => {
        if (this.#clock.now() >= validUntil) end("the lease lapsed before it could be renewed");
        if (ended.signal.aborted) throw ended.signal.reason;
      },
    };
    this.#state = "active";
    let running: ReturnType<ActiveWork>;
    try {
      running = work(tenure);
    } catch (err) {
      // Nothing runs: hand the lease on rather than hold it idle.
      end("the work could not start");
      outer.removeEventListener("abort", onStop);
      this.#state = "standby";
      await this.#release(held.lease, held.etag);
      throw err;
    }
    this.#firstLook?.();
    // Work stops the moment the tenure ends, not after the renewal loop notices.
    let stopped: Promise<void> | undefined;
    const stopWork = () => {
      stopped ??= running.stop();
      return stopped;
    };
    ended.signal.addEventListener("abort", () => void stopWork(), { once: true });
    const lapse = this.#watchLapse(() => validUntil, end, ended.signal);
    let { lease, etag } = held;
    let wait = this.#renewEveryMs;
    while (!ended.signal.aborted) {
      try {
        await this.#clock.sleep(wait, ended.signal);
      } catch {
        break;
      }
      const renewAt = this.#clock.now();
      const next = renewedLease(lease, renewAt, this.#durationMs);
      try {
        const written = await this.#record.write(next, etag, ended.signal);
        if (written !== undefined) {
          lease = next;
          etag = written;
          validUntil = renewAt + validForMs;
          wait = this.#renewEveryMs;
          this.#logger.debug({ expiresAt: next.expiresAt }, "scheduler lease renewed");
          continue;
        }
        // 412: read again. Still ours (an earlier write landed though its answer was lost):
        // carry on from that version; anyone else's: the tenure is over.
        const current = await this.#record.read(ended.signal);
        if (
          current?.lease.holder === this.#holder &&
          current.lease.acquiredAt === lease.acquiredAt
        ) {
          lease = current.lease;
          etag = current.etag;
          wait = 0;
          continue;
        }
        end(`another scheduler holds the lease (${current?.lease.holder ?? "no record"})`);
      } catch (err) {
        if (ended.signal.aborted) break;
        // Transient: try again soon; the lapse watcher ends the tenure if it never succeeds.
        this.#logger.warn({ err }, "scheduler lease renewal failed; retrying");
        wait = Math.max(1, Math.round(this.#renewEveryMs / 4));
      }
    }
    outer.removeEventListener("abort", onStop);
    await lapse;
    await stopWork();
    if (outer.aborted) {
      await this.#release(lease, etag);
      return;
    }
    this.#logger.warn(
      { reason: (ended.signal.reason as Error).message },
      "scheduler lease lost: loops stopped; standing by",
    );
    this.#state = "standby";
  }

  /** Ends the tenure once the clock passes `validUntil()` without a renewal. */
  async #watchLapse(
    validUntil: () => number,
    end: (reason: string) => void,
    signal: AbortSignal,
  ): Promise<void> {
    while (!signal.aborted) {
      const left = validUntil() - this.#clock.now();
      if (left <= 0) {
        end("the lease lapsed before it could be renewed");
        return;
      }
      try {
        await this.#clock.sleep(left, signal);
      } catch {
        return;
      }
    }
  }

  /** Best effort: a standby takes over at once instead of after the lease duration. */
  async #release(lease: SchedulerLease, etag: string): Promise<void> {
    try {
      let written = await this.#record.write(releasedLease(lease, this.#clock.now()), etag);
      if (written === undefined) {
        // A renewal cut short by the stop may have landed after all: still ours, release that.
        const current = await this.#record.read();
        if (
          current?.lease.holder === this.#holder &&
          current.lease.acquiredAt === lease.acquiredAt
        ) {
          written = await this.#record.write(
            releasedLease(current.lease, this.#clock.now()),
            current.etag,
          );
        }
      }
      this.#logger.info(
        { released: written !== undefined },
        written !== undefined
          ? "scheduler lease released"
          : "scheduler lease not released: another scheduler holds it already",
      );
    } catch (err) {
      this.#logger.warn({ err }, "scheduler lease not released; it lapses by itself");
    }
  }
}
