/**
 * Fair share, as pure functions: which operations' shards go to the work queue next, and how
 * many fit in its bounded backlog. The dispatcher (./dispatcher.ts) observes, calls these and
 * sends; the policy keeps no state between passes, so a restarted or new scheduler decides the
 * same from the same records.
 *
 * The order is weighted max-min fair over what each operation already has in the pipeline
 * (shards dispatched and not committed: queued, running, or released for a retry), at two
 * levels: first between tenants (equal weights), then between one tenant's operations, weighted
 * by `priority`. Each slot goes to the tenant with the least load, then to that tenant's
 * operation with the least load per weight; ties go to the one served least recently (the
 * dispatcher remembers when it last served each operation; forgetting it on a restart only
 * changes tie-breaks), then to the older operation. An operation with nothing in the pipeline has
 * load 0 and one not served for a while soon wins the ties, so none starves however its
 * priority compares: a priority never reaches weight 0.
 */

/** One operation that may send shards now. */
export interface FairCandidate {
  id: string;
  tenant: string;
  /** −100…100, higher first (`caps.priority` ?? `spec.priority` ?? 0). */
  priority: number;
  /** Shards it could send now: available (sliced) and not dispatched yet. */
  ready: number;
  /** Its shards in the pipeline: dispatched and not committed. */
  inflight: number;
  /** When it was submitted (ISO time or anything that sorts the same way): older wins ties. */
  createdAt: string;
  /** When it was last given a slot (any increasing counter); absent: never. Earlier wins ties. */
  servedAt?: number;
}

/** One slot of the plan: the operation whose next shard goes out. */
export type FairPlan = string[];

/** Priority steps that double an operation's weight. */
export const PRIORITY_DOUBLING = 20;

/**
 * The weight of a priority: 2^(priority / 20), so +20 gets twice the share of 0 and −100 still
 * gets 1/32 of it (never zero: no operation starves).
 */
export function priorityWeight(priority: number): number {
  return 2 ** (priority / PRIORITY_DOUBLING);
}

/**
 * The next `slots` shards to send, as the operation id of each, in sending order. Work-
 * conserving: gives min(slots, Σ ready) slots and never more than an operation's `ready`.
 */
export function fairOrder(candidates: readonly FairCandidate[], slots: number): FairPlan {
  const ops = candidates.map((c) => ({
    ...c,
    weight: priorityWeight(c.priority),
    left: Math.max(0, c.ready),
    load: Math.max(0, c.inflight),
    served: c.servedAt ?? Number.NEGATIVE_INFINITY,
  }));
  // When each tenant was last served: its most recently served operation.
  const tenantServed = new Map<string, number>();
  for (const op of ops) {
    tenantServed.set(
      op.tenant,
      Math.max(tenantServed.get(op.tenant) ?? Number.NEGATIVE_INFINITY, op.served),
    );
  }
  // Slots of this pass count as later than any earlier service.
  let clock = Math.max(0, ...ops.map((o) => (Number.isFinite(o.served) ? o.served + 1 : 0)));
  // A tenant's load counts every operation of it, also those with nothing ready.
  const tenantLoad = new Map<string, number>();
  for (const op of ops) tenantLoad.set(op.tenant, (tenantLoad.get(op.tenant) ?? 0) + op.load);

  const plan: FairPlan = [];
  for (let n = 0; n < slots; n++) {
    // The tenant first (least load; ties: served least recently, then the one with the oldest
    // ready operation), then its operation: two stages, so the candidates' order does not matter.
    const oldest = new Map<string, Ranked>();
    for (const op of ops) {
      if (op.left === 0) continue;
      const seen = oldest.get(op.tenant);
      if (!seen || older(op, seen)) oldest.set(op.tenant, op);
    }
    let tenant: { name: string; load: number; served: number; oldest: Ranked } | undefined;
    for (const [name, first] of oldest) {
      const load = tenantLoad.get(name) ?? 0;
      const served = tenantServed.get(name) ?? Number.NEGATIVE_INFINITY;
      if (
        tenant === undefined ||
        load < tenant.load ||
        (load === tenant.load &&
          (served < tenant.served || (served === tenant.served && older(first, tenant.oldest))))
      ) {
        tenant = { name, load, served, oldest: first };
      }
    }
    if (!tenant) break;
    let best: (typeof ops)[number] | undefined;
    for (const op of ops) {
      if (op.left === 0 || op.tenant !== tenant.name) continue;
      if (best === undefined || lighter(op, best)) best = op;
    }
    if (!best) break;
    plan.push(best.id);
    best.left--;
    best.load++;
    best.served = clock++;
    tenantLoad.set(best.tenant, tenant.load + 1);
    tenantServed.set(best.tenant, best.served);
  }
  return plan;
}

interface Ranked {
  id: string;
  weight: number;
  load: number;
  served: number;
  createdAt: string;
}

/** Submitted earlier (ids break exact ties, so the order is total). */
function older(a: Ranked, b: Ranked): boolean {
  return a.createdAt !== b.createdAt ? a.createdAt < b.createdAt : a.id < b.id;
}

/** Less load per weight, then served less recently, then older. */
function lighter(a: Ranked, b: Ranked): boolean {
  const ra = a.load / a.weight;
  const rb = b.load / b.weight;
  if (ra !== rb) return ra < rb;
  return a.served !== b.served ? a.served < b.served : older(a, b);
}

/** What bounds the work queue's backlog. */
export interface BacklogBound {
  /** Shards the queue may always hold, however little runs. */
  minQueued: number;
  /** Shards queued per shard running: the backlog grows with the fleet that drains it. */
  queuedPerRunning: number;
  /**
   * Seconds of what workers take: the backlog may also hold `drainPerSecond × drainSeconds`
   * shards, so short shards do not leave workers waiting for the next pass. @default 0
   */
  drainSeconds?: number;
}

/**
 * How many more shards may go to the work queue now: the backlog may hold
 * max(minQueued, ⌈queuedPerRunning × running⌉, ⌈drainPerSecond × drainSeconds⌉) shards. A small
 * backlog is what makes the order count: new work waits behind at most that many shards, not
 * behind a whole big operation. The drain term is a rate, not a count per pass: sizing it by
 * what workers drained since the last pass was tried, and under load a pass takes seconds, the
 * backlog grew with it and a small operation waited behind most of a big one. A rate times a
 * fixed time keeps the wait to about `drainSeconds` of the fleet's work however slow passes get.
 */
export function dispatchRoom(
  observed: { queued: number; running: number; drainPerSecond?: number },
  bound: BacklogBound,
): number {
  const cap = Math.max(
    bound.minQueued,
    Math.ceil(bound.queuedPerRunning * observed.running),
    Math.ceil((bound.drainSeconds ?? 0) * Math.max(0, observed.drainPerSecond ?? 0)),
  );
  return Math.max(0, cap - Math.max(0, observed.queued));
}

/**
 * How far back the drain rate looks at least: one pass (500 ms), so that a backlog found gone
 * doubles at the next pass (the rate is then what was sent ÷ a pass) and a fleet's first fill
 * counts for no more than a pass's worth.
 */
export const DRAIN_WINDOW_MS = 500;

/**
 * The drain rate as passes see it: each pass notes the shards workers started since the last
 * one, and gets the rate over the last `windowMs` (`drainRate`), keeping only the samples that
 * rate needs (the newest at least a window old, and those after it).
 */
export class DrainMeter {
  readonly #windowMs: number;
  readonly #samples: DrainSample[] = [];
  #startedInAll = 0;

  constructor(windowMs: number = DRAIN_WINDOW_MS) {
    this.#windowMs = windowMs;
  }

  /** Notes `drained` shards started by `now` (ms); the rate per second. */
  note(now: number, drained: number): number {
    this.#startedInAll += drained;
    this.#samples.push({ at: now, started: this.#startedInAll });
    while (this.#samples.length > 1 && this.#samples[1]!.at <= now - this.#windowMs) {
      this.#samples.shift();
    }
    return drainRate(this.#samples, this.#windowMs);
  }
}

/** One observation of the shards workers had started in all, at a time (ms). */
export interface DrainSample {
  at: number;
  started: number;
}

/**
 * Shards started per second, from the newest sample at least `windowMs` before the last one
 * (or the oldest) to the last, over at least `windowMs`: a pass woken early does not swing the
 * backlog, a slow pass spreads what it saw over its length, and a fleet's first fill (every slot
 * taking a shard at once) counts as no more than a window's worth.
 */
export function drainRate(samples: readonly DrainSample[], windowMs: number): number {
  const last = samples.at(-1);
  const first = samples[0];
  if (!last || !first) return 0;
  let base = first;
  for (const s of samples) {
    if (s.at > last.at - windowMs) break;
    base = s;
  }
  const ms = Math.max(last.at - base.at, windowMs);
  return ms > 0 ? (Math.max(0, last.started - base.started) * 1000) / ms : 0;
}
