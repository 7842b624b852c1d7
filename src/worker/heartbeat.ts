/**
 * Keeps in-flight messages invisible while their shards run: every `intervalMs` each tracked
 * message's visibility is extended to `visibilityTimeoutSeconds` again. Without it a shard
 * longer than the queue's visibility timeout would be handed to a second worker mid-way.
 *
 * Deliberately simple for now: a failed extension is logged (the message may reappear and run
 * twice, which the conditional commit makes harmless). Losing ownership → aborting the shard
 * comes with checkpoints.
 */
import type { Logger } from "../shared/logger.ts";

/** The one queue call the heartbeat needs (ShardQueue has it). */
export interface VisibilityPort {
  changeVisibility(
    queueUrl: string,
    receiptHandle: string,
    seconds: number,
    signal?: AbortSignal,
  ): Promise<void>;
}

export interface HeartbeatOptions {
  /** Visibility each beat sets, in seconds. */
  visibilityTimeoutSeconds: number;
  /** Time between beats. @default a third of the visibility timeout */
  intervalMs?: number;
}

export class Heartbeat {
  readonly #queue: VisibilityPort;
  readonly #logger: Logger;
  readonly #seconds: number;
  readonly #tracked = new Map<string, { queueUrl: string; receiptHandle: string }>();
  readonly #timer: NodeJS.Timeout;
  readonly #closing = new AbortController();

  constructor(deps: { queue: VisibilityPort; logger: Logger }, options: HeartbeatOptions) {
    this.#queue = deps.queue;
    this.#logger = deps.logger;
    this.#seconds = options.visibilityTimeoutSeconds;
    const interval =
      options.intervalMs ?? Math.max(1000, (options.visibilityTimeoutSeconds * 1000) / 3);
    this.#timer = setInterval(() => void this.#beat(), interval);
    // Never the reason the process stays alive.
    this.#timer.unref();
  }

  /** Starts extending the message under `id` (the caller's handle for it, e.g. message id). */
  track(id: string, queueUrl: string, receiptHandle: string): void {
    this.#tracked.set(id, { queueUrl, receiptHandle });
  }

  untrack(id: string): void {
    this.#tracked.delete(id);
  }

  /** Stops beating; tracked messages keep their current visibility. */
  close(): void {
    clearInterval(this.#timer);
    this.#closing.abort();
    this.#tracked.clear();
  }

  async #beat(): Promise<void> {
    await Promise.all(
      [...this.#tracked.entries()].map(async ([id, m]) => {
        try {
          await this.#queue.changeVisibility(
            m.queueUrl,
            m.receiptHandle,
            this.#seconds,
            AbortSignal.any([this.#closing.signal, AbortSignal.timeout(10_000)]),
          );
        } catch (err) {
          if (this.#tracked.has(id) && !this.#closing.signal.aborted) {
            this.#logger.warn({ err, messageId: id }, "cannot extend the message's visibility");
          }
        }
      }),
    );
  }
}
