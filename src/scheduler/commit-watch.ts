/**
 * Hearing of an operation's last commits soon. The scheduler learns that every shard committed
 * from its pass (a listing of every shard's records, every `intervalMs`, 500 ms by default), so
 * the merge used to start up to a pass interval after the last commit: about a third of a second
 * on average, which is several per cent of a small operation's makespan. S3 tells no one of a
 * new object, so once only a few shards are left, their commit markers are watched instead: one
 * HEAD every `intervalMs` (100 ms by default), on the first marker still missing, moving on to
 * the next as soon as it exists; when none is missing the scheduler is woken and its next pass
 * (now) starts the merge. One HEAD at a time keeps the cost flat however many shards are left
 * (ten small requests a second while the last shards run); a watch ends by itself after
 * `maxMs`, when the next pass may start another.
 *
 * A hint, never a decision: the pass still reads every marker before merging, as before.
 */
import type { Clock } from "../shared/clock.ts";
import type { Logger } from "../shared/logger.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import { isCommitted } from "../shared/records/done-marker.ts";

export interface CommitWatchOptions {
  /** Pause between two checks of a missing marker. @default 100 */
  intervalMs?: number;
  /** Watch only when at most this many shards are left. @default 8 */
  maxShards?: number;
  /** A watch gives up after this long (the pass notices the commits anyway). @default 60000 */
  maxMs?: number;
}

export class CommitWatch {
  readonly #store: ObjectStore;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #options: Required<CommitWatchOptions>;
  /** Operations watched now. */
  readonly #watching = new Set<string>();

  constructor(
    deps: { store: ObjectStore; clock: Clock; logger: Logger },
    options: CommitWatchOptions = {},
  ) {
    this.#store = deps.store;
    this.#clock = deps.clock;
    this.#logger = deps.logger;
    this.#options = {
      intervalMs: options.intervalMs ?? 100,
      maxShards: options.maxShards ?? 8,
      maxMs: options.maxMs ?? 60_000,
    };
  }

  /** Whether the operation's shards are watched now. */
  watching(operationId: string): boolean {
    return this.#watching.has(operationId);
  }

  /**
   * Watches the operation's `pending` shards (those without a commit marker) when there are
   * few enough and it is not watched already; calls `onCommitted` once every one has a marker.
   * Returns whether a watch started.
   */
  watch(
    operationId: string,
    pending: readonly string[],
    onCommitted: () => void,
    signal: AbortSignal,
  ): boolean {
    if (pending.length === 0 || pending.length > this.#options.maxShards) return false;
    if (this.#watching.has(operationId) || signal.aborted) return false;
    this.#watching.add(operationId);
    void this.#run(operationId, pending, signal)
      .then((all) => {
        if (all && !signal.aborted) onCommitted();
      })
      .catch((err: unknown) => {
        // A failed check costs only the early wake-up: the pass notices the commits anyway.
        this.#logger.debug({ err, operationId }, "commit watch stopped");
      })
      .finally(() => this.#watching.delete(operationId));
    return true;
  }

  async #run(operationId: string, pending: readonly string[], signal: AbortSignal) {
    // Counted in rounds, not read off the clock: a fake clock's instant sleeps end it too.
    const rounds = Math.ceil(this.#options.maxMs / this.#options.intervalMs);
    let next = 0;
    for (let round = 0; round < rounds; round++) {
      await this.#clock.sleep(this.#options.intervalMs, signal);
      // Every marker found in a row costs one HEAD each; a missing one ends this round.
      while (
        next < pending.length &&
        (await isCommitted(this.#store, { operationId, shardId: pending[next]! }, signal))
      ) {
        next++;
      }
      if (next === pending.length) return true;
    }
    return false;
  }
}
