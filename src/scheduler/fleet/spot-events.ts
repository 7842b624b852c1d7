/**
 * The scheduler's second spot signal: EC2 spot interruption warnings and rebalance
 * recommendations that an EventBridge rule forwards to an SQS queue
 * (SHARDFLEET_SPOT_EVENTS_QUEUE_URL). Workers learn of the same notices from IMDS and drain
 * themselves; this lets the fleet manager act too — replace a warned instance before it is gone,
 * prefer a rebalance-recommended one for scale-in — and show it in the operation's fleet events.
 *
 * The loop long-polls the queue, parses each body (src/shared/schemas/spot-events.ts), hands the
 * signal to the fleet manager and deletes the message once it was applied and recorded. Delivery
 * is at least once; the fleet manager makes a repeat a no-op. What the message says decides:
 * - invalid (not JSON, not an EC2 spot event): logged with the reason and deleted — it can
 *   never become valid;
 * - an instance of another stack (the rule sees the whole account and region): deleted, debug log;
 * - the manager not ready yet (its first pass has not adopted recorded instances), or applying
 *   failed (e.g. the fleet record could not be written): made visible again after
 *   `retryDelaySeconds`.
 *
 * Lifecycle: idle → running (start) → draining (stop: the receive in flight is aborted; a message
 * it had taken comes back after the visibility timeout) → stopped.
 */
import type { Clock } from "../../shared/clock.ts";
import type { Logger } from "../../shared/logger.ts";
import { PeriodicService, type ServiceState } from "../../shared/periodic-service.ts";
import { parseSpotEvent, toSpotSignal } from "../../shared/schemas/spot-events.ts";
import type { ReceivedMessage, ShardQueue } from "../../shared/shard-queue.ts";
import type { FleetManager, SpotSignalOutcome } from "./fleet-manager.ts";

/** What the consumer hands signals to: the fleet manager. */
export type SpotSignalTarget = Pick<FleetManager, "applySpotSignal">;

export interface SpotEventConsumerDeps {
  /** The SQS queue client (ShardQueue's receive/delete/visibility calls serve any queue). */
  queue: Pick<ShardQueue, "receive" | "delete" | "changeVisibility">;
  target: SpotSignalTarget;
  logger: Logger;
  clock: Clock;
}

export interface SpotEventConsumerOptions {
  /** The spot events queue (SHARDFLEET_SPOT_EVENTS_QUEUE_URL). */
  queueUrl: string;
  /** Long-poll wait per receive. @default 20 */
  waitSeconds?: number;
  /** How long a received message stays invisible while it is applied. @default 30 */
  visibilityTimeoutSeconds?: number;
  /** A message the fleet manager cannot take yet comes back after this long. @default 5 */
  retryDelaySeconds?: number;
  /** Pause after a failed receive; doubled on each failure in a row, up to 30 s. @default 1000 */
  errorBackoffMs?: number;
}

/** What became of one message: the fleet manager's answer, or why it never got one. */
export type SpotMessageOutcome = SpotSignalOutcome | "invalid" | "failed";

export type SpotEventConsumerState = ServiceState;

const MAX_BACKOFF_MS = 30_000;

export class SpotEventConsumer {
  readonly #queue: SpotEventConsumerDeps["queue"];
  readonly #target: SpotSignalTarget;
  readonly #log: Logger;
  readonly #queueUrl: string;
  readonly #waitSeconds: number;
  readonly #visibilityTimeoutSeconds: number;
  readonly #retryDelaySeconds: number;
  readonly #service: PeriodicService;

  constructor(deps: SpotEventConsumerDeps, options: SpotEventConsumerOptions) {
    this.#queue = deps.queue;
    this.#target = deps.target;
    this.#log = deps.logger.child({ module: "spot-events" });
    this.#queueUrl = options.queueUrl;
    this.#waitSeconds = options.waitSeconds ?? 20;
    this.#visibilityTimeoutSeconds = options.visibilityTimeoutSeconds ?? 30;
    this.#retryDelaySeconds = options.retryDelaySeconds ?? 5;
    this.#service = new PeriodicService(
      { clock: deps.clock, logger: this.#log },
      {
        name: "spot event consumer",
        // Each pass long-polls, so the next follows at once.
        intervalMs: 0,
        errorBackoff: { firstMs: options.errorBackoffMs ?? 1000, maxMs: MAX_BACKOFF_MS },
        errorLevel: "warn",
      },
      async (signal) => {
        await this.pollOnce(signal);
      },
    );
  }

  get state(): SpotEventConsumerState {
    return this.#service.state;
  }

  /** Starts consuming: one long poll after another, backing off while receives fail. */
  start(): void {
    this.#service.start({ queueUrl: this.#queueUrl });
  }

  stop(): Promise<void> {
    return this.#service.stop();
  }

  /**
   * One receive (long poll) and every message it returned, one after another. Public so tests
   * can drive it; throws only when the receive itself fails.
   */
  async pollOnce(signal: AbortSignal = this.#service.signal): Promise<SpotMessageOutcome[]> {
    const messages = await this.#queue.receive(this.#queueUrl, {
      max: 10,
      waitSeconds: this.#waitSeconds,
      visibilityTimeout: this.#visibilityTimeoutSeconds,
      signal,
    });
    const outcomes: SpotMessageOutcome[] = [];
    for (const m of messages) outcomes.push(await this.handle(m, signal));
    return outcomes;
  }

  /** Parses, applies and settles (deletes or returns) one message. Never throws but on abort. */
  async handle(message: ReceivedMessage, signal: AbortSignal): Promise<SpotMessageOutcome> {
    const parsed = parseSpotEvent(message.body);
    if (!parsed.ok) {
      this.#log.warn(
        { messageId: message.messageId, reason: parsed.reason, body: message.body.slice(0, 300) },
        `invalid spot event deleted: ${parsed.reason}`,
      );
      await this.#delete(message, signal);
      return "invalid";
    }
    const spot = toSpotSignal(parsed.event);
    const log = this.#log.child({
      instanceId: spot.instanceId,
      eventId: spot.eventId,
      detailType: parsed.event["detail-type"],
      messageId: message.messageId,
    });
    let outcome: SpotMessageOutcome;
    try {
      outcome = await this.#target.applySpotSignal(spot, signal);
    } catch (err) {
      if (signal.aborted) throw err;
      log.error({ err }, "could not apply a spot event; its message comes back");
      await this.#returnSoon(message, log, signal);
      return "failed";
    }
    switch (outcome) {
      case "not-ready":
        log.debug("fleet manager not ready; the spot event comes back shortly");
        await this.#returnSoon(message, log, signal);
        return outcome;
      case "unknown-instance":
        log.debug("spot event for an instance of no operation of this fleet: dropped");
        break;
      case "duplicate":
      case "ended":
        log.debug({ outcome }, "spot event changes nothing: dropped");
        break;
      default:
        log.info(`${parsed.event["detail-type"]} for ${spot.instanceId} applied`);
    }
    await this.#delete(message, signal);
    return outcome;
  }

  /** Makes the message visible again after the retry delay rather than its full timeout. */
  async #returnSoon(message: ReceivedMessage, log: Logger, signal: AbortSignal): Promise<void> {
    await this.#queue
      .changeVisibility(this.#queueUrl, message.receiptHandle, this.#retryDelaySeconds, signal)
      .catch((err: unknown) => {
        if (signal.aborted) throw err;
        log.warn({ err }, "could not return a spot event early; it comes back on its timeout");
      });
  }

  async #delete(message: ReceivedMessage, signal: AbortSignal): Promise<void> {
    try {
      await this.#queue.delete(this.#queueUrl, message.receiptHandle, signal);
    } catch (err) {
      if (signal.aborted) throw err;
      // It comes back and is dropped then (applying it again changes nothing).
      this.#log.warn(
        { err, messageId: message.messageId },
        "could not delete a spot event message",
      );
    }
  }
}
