/**
 * The workers sharing an operation's request budget, counted through S3 (no new server): each
 * worker with rows of the operation in flight keeps one small record under
 * `keys.budgetPeersPrefix(op)`, renews it every `refreshMs` and lists the prefix; the records
 * renewed within `ttlMs` are the live workers, and each takes `1 / count` of the budget.
 *
 * Never over the budget, even while the fleet changes:
 * - **Joining.** A worker writes its record, then sends nothing for `joinMs` (two refreshes):
 *   by then every other worker has listed the prefix since the write and lowered its share.
 * - **Leaving.** A worker stops sending before it marks its record left (workers may not
 *   delete); the others raise their share at their next refresh. A worker that dies without a
 *   word is counted until its record is `ttlMs` old: the others stay under the budget meanwhile.
 * - **Cut off.** A worker that could not renew its record for `ttlMs - refreshMs` stops sending
 *   (share 0) until it can: the others may be about to drop it from their count.
 *
 * The record is the worker's own (one writer). The count is read against S3's LastModified,
 * so clocks must agree to well under `ttlMs` (NTP on EC2; one machine locally).
 *
 * Without a rateLimit (`divides: false`) there is nothing to divide: the record is kept only for
 * what it says about the source (the status, the fleet's sizing), renewed every
 * `BUDGET_PEER_REPORT_MS` with a PUT and no LIST, and the worker never waits to join.
 */
import { randomUUID } from "node:crypto";
import type { z } from "zod";
import type { Clock } from "../../shared/clock.ts";
import { describeError } from "../../shared/errors.ts";
import { keys } from "../../shared/keys.ts";
import type { Logger } from "../../shared/logger.ts";
import {
  BUDGET_PEER_REFRESH_MS,
  BUDGET_PEER_REPORT_MS,
  BUDGET_PEER_TTL_MS,
  budgetPeerSchema,
  liveMembers,
  type OriginStats,
} from "../../shared/schemas/budget.ts";

/** What the peers need of the object store. */
export interface PeerStore {
  putJson<S extends z.ZodType>(
    key: string,
    schema: S,
    value: z.input<S>,
    signal?: AbortSignal,
  ): Promise<void>;
  listModified(
    prefix: string,
    signal?: AbortSignal,
  ): Promise<Array<{ key: string; modifiedAt: number }>>;
  putText(key: string, body: string, contentType?: string, signal?: AbortSignal): Promise<void>;
}

/** One origin's counters as the runner keeps them; the record adds the rate and the latency. */
export type OriginCounters = Omit<OriginStats, "requestsPerSecond" | "latencyMs"> & {
  /** The latencies of `requests` summed (ms): the record's mean latency comes from its change. */
  latencyMsTotal: number;
};

/** What the http-enrich runner asks of the fleet. */
export interface FleetShare {
  /**
   * The number of live workers sharing the budget, this one included, or 0 while this worker
   * may not send (joining, or cut off). The share is the budget ÷ this.
   */
  divisor(): number;
  /** Counts this worker in while its rows are in flight; call the returned function when done. */
  hold(): () => void;
  /** What the worker's record says about the source (the status sums it). */
  setReporter(report: () => OriginCounters[]): void;
  /** Stops renewing and marks the record left. */
  close(): Promise<void>;
}

export interface BudgetPeersDeps {
  store: PeerStore;
  clock: Clock;
  logger: Logger;
}

export interface BudgetPeersOptions {
  operationId: string;
  instanceId: string;
  /**
   * Whether the workers divide a budget (the operation has a rateLimit). Without, the record only
   * reports: no listing, no silence on joining, `divisor()` is 1. @default true
   */
  divides?: boolean;
  /** @default 2000 (BUDGET_PEER_REPORT_MS, 4000, when it does not divide) */
  refreshMs?: number;
  /** A record older than this is a gone worker. @default 10000 */
  ttlMs?: number;
  /** Silence after joining. @default 2 × refreshMs + 500 */
  joinMs?: number;
  /** A worker with no rows in flight for this long leaves (its share goes to the others). @default 5000 */
  lingerMs?: number;
}

/** This worker's time as a counted member, from join to leave. */
interface Membership {
  /** Its own record and left marker. */
  key: string;
  leftKey: string;
  stop: AbortController;
  loop: Promise<void>;
  joinedAt: number;
  /** When the last renewal that succeeded started. */
  renewedAt: number;
  /** Live workers at the last refresh, this one included; 0 before the first. */
  count: number;
}

export class BudgetPeers implements FleetShare {
  readonly #store: PeerStore;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #operationId: string;
  readonly #instanceId: string;
  readonly #refreshMs: number;
  readonly #ttlMs: number;
  readonly #joinMs: number;
  readonly #lingerMs: number;
  readonly #divides: boolean;
  #holders = 0;
  /** Present while this worker is counted in: stops its loop and linger. */
  #membership: Membership | undefined;
  #linger: AbortController | undefined;
  #closed = false;
  #report: () => OriginCounters[] = () => [];
  /** Requests and their summed latency per origin at the previous record, for its rate and mean. */
  #previous:
    | { at: number; requests: Map<string, { count: number; latencyMsTotal: number }> }
    | undefined;
  /** The mean latency last recorded per origin (kept while no request answers). */
  readonly #latencyMs = new Map<string, number>();

  constructor(deps: BudgetPeersDeps, options: BudgetPeersOptions) {
    this.#store = deps.store;
    this.#clock = deps.clock;
    this.#logger = deps.logger;
    this.#operationId = options.operationId;
    this.#instanceId = options.instanceId;
    this.#divides = options.divides ?? true;
    this.#refreshMs =
      options.refreshMs ?? (this.#divides ? BUDGET_PEER_REFRESH_MS : BUDGET_PEER_REPORT_MS);
    this.#ttlMs = options.ttlMs ?? BUDGET_PEER_TTL_MS;
    this.#joinMs = this.#divides ? (options.joinMs ?? 2 * this.#refreshMs + 500) : 0;
    this.#lingerMs = options.lingerMs ?? 5000;
  }

  divisor(): number {
    if (!this.#divides) return 1;
    const m = this.#membership;
    if (!m || m.count === 0) return 0;
    const now = this.#clock.now();
    if (now < m.joinedAt + this.#joinMs) return 0;
    if (now > m.renewedAt + this.#ttlMs - this.#refreshMs) return 0;
    return m.count;
  }

  setReporter(report: () => OriginCounters[]): void {
    this.#report = report;
  }

  hold(): () => void {
    if (this.#closed) throw new Error("budget peers closed");
    this.#holders++;
    this.#linger?.abort();
    this.#linger = undefined;
    if (!this.#membership) this.#join();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#holders--;
      if (this.#holders === 0 && !this.#closed) this.#startLinger();
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#linger?.abort();
    await this.#leave();
  }

  #join(): void {
    const stop = new AbortController();
    const member = randomUUID().slice(0, 8);
    const membership: Membership = {
      key: keys.budgetPeer(this.#operationId, this.#instanceId, member),
      leftKey: keys.budgetPeerLeft(this.#operationId, this.#instanceId, member),
      stop,
      loop: Promise.resolve(),
      joinedAt: this.#clock.now(),
      renewedAt: Number.NEGATIVE_INFINITY,
      count: 0,
    };
    this.#membership = membership;
    membership.loop = this.#refreshLoop(membership);
  }

  async #refreshLoop(m: Membership): Promise<void> {
    const { signal } = m.stop;
    while (!signal.aborted) {
      try {
        const now = this.#clock.now();
        await this.#store.putJson(
          m.key,
          budgetPeerSchema,
          {
            v: 1,
            instanceId: this.#instanceId,
            renewedAt: new Date(now).toISOString(),
            peers: m.count,
            origins: this.#origins(now),
          },
          signal,
        );
        m.renewedAt = now;
        // Nothing to divide without a budget: the record only reports.
        if (this.#divides) await this.#count(m, signal);
      } catch (err) {
        if (signal.aborted) break;
        this.#logger.warn(
          { operationId: this.#operationId, err: describeError(err) },
          "request budget: could not refresh the worker count; keeping the last one",
        );
      }
      await this.#clock.sleep(this.#refreshMs, signal).catch(() => {});
    }
  }

  /** Counts the live workers from a listing of the operation's records. */
  async #count(m: Membership, signal: AbortSignal): Promise<void> {
    const listedAt = this.#clock.now();
    const records = await this.#store.listModified(
      keys.budgetPeersPrefix(this.#operationId),
      signal,
    );
    // Itself counted whether or not the listing shows its record yet.
    const live = 1 + liveMembers(records, listedAt - this.#ttlMs, m.key).length;
    if (live !== m.count) {
      this.#logger.info(
        { operationId: this.#operationId, peers: live, was: m.count },
        "request budget: live workers changed",
      );
    }
    m.count = live;
  }

  /**
   * The reporter's counters with each origin's request rate and mean latency since the previous
   * record (the latency of the record before when no request answered meanwhile).
   */
  #origins(now: number): OriginStats[] {
    const counters = this.#report();
    const previous = this.#previous;
    this.#previous = {
      at: now,
      requests: new Map(
        counters.map((c) => [c.origin, { count: c.requests, latencyMsTotal: c.latencyMsTotal }]),
      ),
    };
    return counters.map(({ latencyMsTotal, ...c }) => {
      const before = previous?.requests.get(c.origin) ?? { count: 0, latencyMsTotal: 0 };
      const seconds = previous ? (now - previous.at) / 1000 : 0;
      const answered = c.requests - before.count;
      const requestsPerSecond =
        !previous?.requests.has(c.origin) || seconds <= 0 ? 0 : Math.max(0, answered) / seconds;
      if (answered > 0) {
        const mean = Math.max(0, latencyMsTotal - before.latencyMsTotal) / answered;
        this.#latencyMs.set(c.origin, Math.round(mean * 10) / 10);
      }
      const latencyMs = this.#latencyMs.get(c.origin);
      return {
        ...c,
        requestsPerSecond: Math.round(requestsPerSecond * 100) / 100,
        ...(latencyMs === undefined ? {} : { latencyMs }),
      };
    });
  }

  #startLinger(): void {
    const linger = new AbortController();
    this.#linger = linger;
    this.#clock.sleep(this.#lingerMs, linger.signal).then(
      () => {
        if (this.#holders === 0 && this.#linger === linger) {
          this.#linger = undefined;
          void this.#leave();
        }
      },
      () => {},
    );
  }

  async #leave(): Promise<void> {
    const m = this.#membership;
    if (!m) return;
    this.#membership = undefined;
    m.stop.abort();
    await m.loop;
    try {
      await this.#store.putText(m.leftKey, "", "text/plain", AbortSignal.timeout(10_000));
    } catch (err) {
      // The record goes stale after ttlMs anyway; the others only stay under the budget meanwhile.
      this.#logger.warn(
        { operationId: this.#operationId, err: describeError(err) },
        "request budget: could not mark this worker as gone",
      );
    }
  }
}
