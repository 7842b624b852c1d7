/**
 * A token bucket whose rate may change while it runs: a worker's share of the fleet's request
 * budget changes as workers join and leave. Waiters are served in arrival order.
 *
 * Hand-written rather than `limiter` (npm): that one reads Date.now, cannot change its rate with
 * waiters queued, and cannot be aborted; a shard's abort must free its waiting requests at once.
 */
import { untilAborted } from "../../shared/async.ts";
import type { Clock } from "../../shared/clock.ts";

/** The bucket's current setting: tokens a second (0: none may be taken now) and its capacity. */
export interface BucketRate {
  perSecond: number;
  burst: number;
}

export interface TokenBucketOptions {
  /** Read before every grant, so a new share applies to the next request. */
  rate: () => BucketRate;
  /** How long a waiter sleeps before looking again while the rate is 0. @default 100 */
  idlePollMs?: number;
}

export class TokenBucket {
  readonly #clock: Clock;
  readonly #rate: () => BucketRate;
  readonly #idlePollMs: number;
  /** Starts empty: a worker that joins adds no burst of its own. */
  #tokens = 0;
  #refilledAt: number;
  /** The last waiter in line: each take waits for the one before it. */
  #tail: Promise<void> = Promise.resolve();
  #granted = 0;

  constructor(clock: Clock, options: TokenBucketOptions) {
    this.#clock = clock;
    this.#rate = options.rate;
    this.#idlePollMs = options.idlePollMs ?? 100;
    this.#refilledAt = clock.now();
  }

  /** Tokens handed out so far. */
  get granted(): number {
    return this.#granted;
  }

  /** Resolves when a token is taken; rejects with the signal's reason if it aborts first. */
  async take(signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    const before = this.#tail;
    let done!: () => void;
    this.#tail = new Promise<void>((resolve) => {
      done = resolve;
    });
    try {
      await untilAborted(before, signal);
      for (;;) {
        const rate = this.#refill();
        if (this.#tokens >= 1) {
          this.#tokens -= 1;
          this.#granted++;
          return;
        }
        const waitMs =
          rate.perSecond > 0
            ? Math.max(1, Math.ceil(((1 - this.#tokens) / rate.perSecond) * 1000))
            : this.#idlePollMs;
        await this.#clock.sleep(waitMs, signal);
      }
    } finally {
      // The next in line goes once we are done, or once the one before us is (if we gave up).
      void before.then(done);
    }
  }

  #refill(): BucketRate {
    const rate = this.#rate();
    const now = this.#clock.now();
    const burst = Math.max(1, rate.burst);
    this.#tokens = Math.min(
      burst,
      this.#tokens + (Math.max(0, now - this.#refilledAt) / 1000) * rate.perSecond,
    );
    this.#refilledAt = now;
    return rate;
  }
}
