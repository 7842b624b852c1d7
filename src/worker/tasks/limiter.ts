/**
 * A counting semaphore: at most `limit` holders at once, waiters served in arrival order.
 * Small on purpose (no dependency): tasks share one per runner, so the limit is per worker
 * however many shards run at once. The limit may change while it runs (adaptive concurrency):
 * a lower one lets holders finish and admits no one until the count is under it.
 */
export class Limiter {
  #limit: number;
  #active = 0;
  readonly #waiters: Array<() => void> = [];

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1)
      throw new RangeError(`limit must be ≥ 1, got ${limit}`);
    this.#limit = limit;
  }

  get limit(): number {
    return this.#limit;
  }

  /** Changes the limit; a higher one admits waiters at once. */
  setLimit(limit: number): void {
    if (!Number.isInteger(limit) || limit < 1)
      throw new RangeError(`limit must be ≥ 1, got ${limit}`);
    this.#limit = limit;
    while (this.#active < this.#limit && this.#waiters.length > 0) this.#waiters.shift()?.();
  }

  /** Holders right now. */
  get active(): number {
    return this.#active;
  }

  /** Runs `fn` once a slot is free; rejects with the signal's reason if it aborts first. */
  async run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    await this.acquire(signal);
    try {
      return await fn();
    } finally {
      this.release();
    }
  }

  /**
   * Takes a slot at once when one is free and nobody waits (then call `release`): the hot
   * path of a caller that would otherwise wrap each request in `run`'s closure and promise.
   */
  tryAcquire(): boolean {
    if (this.#active < this.#limit && this.#waiters.length === 0) {
      this.#active++;
      return true;
    }
    return false;
  }

  /** Waits for a slot (then call `release`); rejects with the signal's reason if it aborts first. */
  acquire(signal?: AbortSignal): Promise<void> {
    return this.#acquire(signal);
  }

  /** Gives back a slot taken by `tryAcquire` or `acquire`. */
  release(): void {
    this.#release();
  }

  #acquire(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    if (this.#active < this.#limit && this.#waiters.length === 0) {
      this.#active++;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const grant = () => {
        signal?.removeEventListener("abort", onAbort);
        this.#active++;
        resolve();
      };
      const onAbort = () => {
        const at = this.#waiters.indexOf(grant);
        if (at >= 0) this.#waiters.splice(at, 1);
        reject(signal?.reason);
      };
      this.#waiters.push(grant);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  #release(): void {
    this.#active--;
    if (this.#active < this.#limit) this.#waiters.shift()?.();
  }
}
