/**
 * The set of operations a loop found finished and stops reading, for the scheduler and the fleet
 * manager. A finished operation can come back to life (`POST /operations/:id/retry`): the process
 * that accepts the retry says so (`delete`, through the loops' `revive`), and an entry also
 * lapses after `recheckMs`, so a retry accepted by another process (a standby's API) is seen
 * within that time at the cost of one manifest read per finished operation per `recheckMs`.
 */
import type { Clock } from "./clock.ts";

/** How long an operation found finished is not read again. @default 5 minutes */
export const FINISHED_RECHECK_MS = 5 * 60_000;

export class FinishedOperations extends Set<string> {
  readonly #addedAt = new Map<string, number>();
  readonly #clock: Pick<Clock, "now">;
  readonly #recheckMs: number;

  constructor(deps: { clock: Pick<Clock, "now"> }, options: { recheckMs?: number } = {}) {
    super();
    this.#clock = deps.clock;
    this.#recheckMs = options.recheckMs ?? FINISHED_RECHECK_MS;
  }

  override add(id: string): this {
    this.#addedAt.set(id, this.#clock.now());
    return super.add(id);
  }

  override has(id: string): boolean {
    const at = this.#addedAt.get(id);
    if (at !== undefined && this.#clock.now() - at >= this.#recheckMs) {
      this.delete(id);
      return false;
    }
    return super.has(id);
  }

  override delete(id: string): boolean {
    this.#addedAt.delete(id);
    return super.delete(id);
  }
}
