/**
 * The set of operations found finished and no longer read, one per scheduler process, shared by
 * its loops (the scheduler's pass and the fleet manager's). A finished operation can come back
 * to life (`POST /operations/:id/retry`): the process that accepts the retry says so (`delete`,
 * through the loops' `revive`), and an entry also lapses after `recheckMs`, so a retry accepted
 * by another process (a standby's API) is seen within that time.
 *
 * The recheck is one manifest read per finished operation per `recheckMs`, whichever loop comes
 * first: the first `has` after the lapse answers false (that loop reads the manifest again) and
 * claims the recheck, so other loops keep answering true until the claimant settles it — `add`
 * (still finished) or `delete` (it runs again: every loop reads it). A claim never settled (the
 * read failed) lapses after `recheckMs` too, and the next `has` claims it again.
 *
 * A deleted operation is never asked about again (no listing names it), so each loop hands its
 * listing to `retain`, which forgets entries and claims of operations that are gone.
 */
import type { Clock } from "./clock.ts";

/** How long an operation found finished is not read again. @default 5 minutes */
export const FINISHED_RECHECK_MS = 5 * 60_000;

export class FinishedOperations extends Set<string> {
  readonly #addedAt = new Map<string, number>();
  /** Lapsed entries being read again by the loop that claimed them, and since when. */
  readonly #rechecking = new Map<string, number>();
  readonly #clock: Pick<Clock, "now">;
  readonly #recheckMs: number;

  constructor(deps: { clock: Pick<Clock, "now"> }, options: { recheckMs?: number } = {}) {
    super();
    this.#clock = deps.clock;
    this.#recheckMs = options.recheckMs ?? FINISHED_RECHECK_MS;
  }

  override add(id: string): this {
    this.#addedAt.set(id, this.#clock.now());
    this.#rechecking.delete(id);
    return super.add(id);
  }

  /** Whether `id` is finished; false once per lapse, to the one caller that should read it. */
  override has(id: string): boolean {
    const now = this.#clock.now();
    const claimed = this.#rechecking.get(id);
    if (claimed !== undefined) {
      if (now - claimed < this.#recheckMs) return true;
      this.#rechecking.set(id, now);
      return false;
    }
    const at = this.#addedAt.get(id);
    if (at !== undefined && now - at >= this.#recheckMs) {
      this.#addedAt.delete(id);
      super.delete(id);
      this.#rechecking.set(id, now);
      return false;
    }
    return super.has(id);
  }

  /** Forgets every operation not in `existing` (one listing of all operation ids): deleted. */
  retain(existing: ReadonlySet<string>): void {
    for (const id of [...this.#addedAt.keys(), ...this.#rechecking.keys()]) {
      if (!existing.has(id)) this.delete(id);
    }
  }

  /** Not finished (any more): every loop reads it again. */
  override delete(id: string): boolean {
    this.#addedAt.delete(id);
    const claimed = this.#rechecking.delete(id);
    return super.delete(id) || claimed;
  }
}
