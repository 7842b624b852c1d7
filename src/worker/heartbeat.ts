/**
 * Keeps in-flight messages invisible while their shards run: every `intervalMs` (a third of the
 * visibility timeout by default: 20 s of 60 s, so two more beats fit before the message would
 * reappear) each tracked message's visibility is extended to `visibilityTimeoutSeconds` again.
 *
 * Each tracked message beats on its own timer from the moment it is tracked (right after its
 * receive), through the injected clock, so timing is testable with a fake clock.
 *
 * A failed beat:
 * - the receipt handle is no longer valid (SQS: ReceiptHandleIsInvalid, MessageNotInflight, or
 *   InvalidParameterValue naming the receipt handle; the local server answers
 *   MessageNotInflight): the message was delivered to someone else, or deleted. The shard is no
 *   longer ours: `onLost` is called with a ShardLostError (the consumer aborts the shard, which
 *   commits nothing and records its attempt as `lost`) and the message is untracked;
 * - anything else (throttling, a dropped connection) is transient: retried after `retryMs`,
 *   doubling, never later than the regular beat.
 */
import { awsErrorCodes } from "../shared/aws-errors.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import { ShardLostError } from "../shared/errors.ts";
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

export interface HeartbeatDeps {
  queue: VisibilityPort;
  logger: Logger;
  /** @default systemClock */
  clock?: Clock;
}

export interface HeartbeatOptions {
  /** Visibility each beat sets, in seconds. */
  visibilityTimeoutSeconds: number;
  /** Time between beats. @default a third of the visibility timeout (at least 1 s) */
  intervalMs?: number;
  /** First retry after a transient failure; doubles up to `intervalMs`. @default 1000 */
  retryMs?: number;
  /** Deadline of one ChangeMessageVisibility call. @default 10000 */
  callTimeoutMs?: number;
}

const RECEIPT_GONE = new Set(["ReceiptHandleIsInvalid", "MessageNotInflight"]);

/** True when SQS says the receipt handle no longer designates an in-flight message of ours. */
export function isReceiptHandleGone(err: unknown): boolean {
  const names = awsErrorCodes(err);
  if (names.some((n) => RECEIPT_GONE.has(n))) return true;
  // SQS answers an expired handle with InvalidParameterValue "… ReceiptHandle is invalid …".
  return (
    names.includes("InvalidParameterValue") &&
    err instanceof Error &&
    /receipt ?handle/i.test(err.message)
  );
}

interface Tracked {
  stop: AbortController;
  beats: number;
}

export class Heartbeat {
  readonly #queue: VisibilityPort;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #seconds: number;
  readonly #intervalMs: number;
  readonly #retryMs: number;
  readonly #callTimeoutMs: number;
  readonly #tracked = new Map<string, Tracked>();
  #closed = false;

  constructor(deps: HeartbeatDeps, options: HeartbeatOptions) {
    this.#queue = deps.queue;
    this.#logger = deps.logger;
    this.#clock = deps.clock ?? systemClock;
    this.#seconds = options.visibilityTimeoutSeconds;
    this.#intervalMs =
      options.intervalMs ?? Math.max(1000, (options.visibilityTimeoutSeconds * 1000) / 3);
    this.#retryMs = Math.min(options.retryMs ?? 1000, this.#intervalMs);
    this.#callTimeoutMs = options.callTimeoutMs ?? 10_000;
  }

  /** The time between beats, in ms. */
  get intervalMs(): number {
    return this.#intervalMs;
  }

  /**
   * Starts extending the message under `id` (the caller's handle for it, e.g. message id).
   * `onLost` is called once if SQS says the message is no longer ours.
   */
  track(
    id: string,
    queueUrl: string,
    receiptHandle: string,
    onLost?: (err: ShardLostError) => void,
  ): void {
    if (this.#closed) return;
    this.untrack(id);
    const tracked: Tracked = { stop: new AbortController(), beats: 0 };
    this.#tracked.set(id, tracked);
    void this.#loop(id, queueUrl, receiptHandle, tracked, onLost);
  }

  untrack(id: string): void {
    const tracked = this.#tracked.get(id);
    if (!tracked) return;
    this.#tracked.delete(id);
    tracked.stop.abort();
  }

  /** Successful beats of a tracked message (tests, logs). */
  beatsOf(id: string): number {
    return this.#tracked.get(id)?.beats ?? 0;
  }

  /** Stops beating; tracked messages keep their current visibility. */
  close(): void {
    this.#closed = true;
    for (const id of [...this.#tracked.keys()]) this.untrack(id);
  }

  async #loop(
    id: string,
    queueUrl: string,
    receiptHandle: string,
    tracked: Tracked,
    onLost: ((err: ShardLostError) => void) | undefined,
  ): Promise<void> {
    const { signal } = tracked.stop;
    let delay = this.#intervalMs;
    let failures = 0;
    while (!signal.aborted) {
      try {
        await this.#clock.sleep(delay, signal);
      } catch {
        return;
      }
      try {
        await this.#queue.changeVisibility(
          queueUrl,
          receiptHandle,
          this.#seconds,
          AbortSignal.any([signal, AbortSignal.timeout(this.#callTimeoutMs)]),
        );
        tracked.beats++;
        if (failures > 0) this.#logger.info({ messageId: id, failures }, "heartbeat recovered");
        failures = 0;
        delay = this.#intervalMs;
      } catch (err) {
        if (signal.aborted) return;
        if (isReceiptHandleGone(err)) {
          this.#logger.warn(
            { err, messageId: id },
            "message is no longer ours (receipt handle invalid); stopping its shard",
          );
          this.untrack(id);
          onLost?.(
            new ShardLostError(`message ${id} is no longer ours: its receipt handle is invalid`, {
              cause: err,
            }),
          );
          return;
        }
        failures++;
        delay = Math.min(this.#intervalMs, this.#retryMs * 2 ** (failures - 1));
        this.#logger.warn(
          { err, messageId: id, failures, retryInMs: delay },
          "cannot extend the message's visibility; retrying",
        );
      }
    }
  }
}
