/**
 * The worker's consumer loop: long-polls the work queue, runs up to `shardsInFlight` shards at
 * once, deletes each message after its shard is committed.
 *
 * States:
 *   starting  constructed, `run()` not called yet
 *   running   polling and processing
 *   draining  `stop()` called (a spot interruption notice, SIGTERM, or a fatal queue error): no
 *             new receives; in-flight shards run on for the grace period (a few seconds: rows
 *             in flight may finish, a nearly done shard may commit), then their signals abort,
 *             each flushes a final checkpoint and its message is made visible again at once
 *             so the next worker resumes it from there
 *   stopped   drained after `stop()`; `run()` has resolved
 *   failed    drained after a fatal error (the queue is gone, access denied); `run()` rejects
 *
 * Message outcomes: the handler resolves one (./shard-outcome.ts) and `#settle` switches on it:
 *   delete       (committed by anyone, or committed failed at the poison limit) → DeleteMessage
 *   release n    → ChangeMessageVisibility n: an interrupted shard (after its final
 *                  checkpoint) at once, with `requeueMs` (since stop() was called) logged; an
 *                  error attempt below the poison limit after its backoff (2^n s)
 *   dead-letter  → the raw body to the DLQ (SendMessage), then DeleteMessage
 *   abandon      (a heartbeat found the receipt handle invalid) → nothing: the message is
 *                  someone else's now
 *   the handler threw (the unexpected) → `outcomeOfError`: released at once (after the
 *                  queue's maxReceiveCount SQS moves it to the DLQ itself, the safety net for
 *                  crash loops), or abandoned when the heartbeat already lost it
 *   received while draining → ChangeMessageVisibility 0, never started
 *
 * Why a draining worker does not abort its pending long poll when it has shards in flight: a
 * ReceiveMessage whose client went away stays open on the server for the rest of its wait, and
 * whatever it catches (our own just-released messages first of all) turns invisible for a whole
 * visibility timeout with nobody working on it. So the poll is left to end on its own (at most
 * `pollWaitSeconds` after it began) and what it brings is released again. An idle worker has
 * nothing to release and aborts its poll at once, so stopping it is instant; a forced stop
 * (`stop({ graceMs: 0 })` a second time) aborts everything.
 *
 * One AbortController for the process (aborts every shard), one for receiving, one per shard.
 */
import { type AwsErrorKind, classifyAwsError } from "../shared/aws-errors.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import { ShardfleetError } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import type { ReceivedMessage } from "../shared/shard-queue.ts";
import { Heartbeat, type VisibilityPort } from "./heartbeat.ts";
import { type MessageOutcome, outcomeOfError } from "./shard-outcome.ts";

export type ConsumerState = "starting" | "running" | "draining" | "stopped" | "failed";

/** The queue calls the consumer makes (ShardQueue implements them). */
export interface ConsumerQueue extends VisibilityPort {
  receive(
    queueUrl: string,
    options: { max: number; waitSeconds: number; visibilityTimeout: number; signal?: AbortSignal },
  ): Promise<ReceivedMessage[]>;
  delete(queueUrl: string, receiptHandle: string, signal?: AbortSignal): Promise<void>;
  sendRaw(queueUrl: string, body: string, signal?: AbortSignal): Promise<void>;
}

/** What runs one message (ShardProcessor implements it). */
export interface ShardHandler {
  /**
   * Resolves what should happen to the message once the shard has ended (./shard-outcome.ts).
   * Rejects only for the unexpected. When `signal` aborts, ends soon (a final checkpoint).
   */
  process(
    body: string,
    ctx: { signal: AbortSignal; messageId: string; receiveCount: number },
  ): Promise<MessageOutcome>;
}

export interface ConsumerDeps {
  queue: ConsumerQueue;
  handler: ShardHandler;
  logger: Logger;
  /** @default systemClock */
  clock?: Clock;
}

export interface ConsumerOptions {
  queues: {
    work: string;
    /** Polled first, without waiting, by on-demand workers (see `#nextPoll`). */
    straggler?: string | undefined;
    /** Where unparseable messages go. Without one they are left to the queue's redrive. */
    dlq?: string | undefined;
  };
  market: "spot" | "on-demand";
  /** Shards processed at once. @default 2 */
  shardsInFlight?: number;
  /** Visibility a receive (and each heartbeat) sets, in seconds. @default 60 */
  visibilityTimeoutSeconds?: number;
  /** Long-poll wait, in seconds (0–20). @default 20 */
  pollWaitSeconds?: number;
  /**
   * How long `stop()` lets in-flight shards run before aborting them (they then flush a final
   * checkpoint). Short on purpose: a spot notice gives two minutes. @default 2000
   */
  stopGraceMs?: number;
  /** Keep in-flight messages invisible while they run. @default true */
  heartbeat?: boolean;
  /** Heartbeat interval. @default a third of the visibility timeout */
  heartbeatIntervalMs?: number;
}

/** SQS errors that no amount of retrying fixes: the worker is misconfigured. */
const FATAL_QUEUE_ERRORS = new Set<AwsErrorKind>(["not-found", "access-denied"]);

/** Deadline for the calls that settle a message (delete, release, DLQ) after its shard ended. */
const SETTLE_TIMEOUT_MS = 10_000;

/** The operation and shard ids of a body, for log lines, when it has them. */
function idsOf(body: string): { operationId?: unknown; shardId?: unknown } {
  try {
    const raw = JSON.parse(body) as { operationId?: unknown; shardId?: unknown } | null;
    return raw && typeof raw === "object"
      ? { operationId: raw.operationId, shardId: raw.shardId }
      : {};
  } catch {
    return {};
  }
}

export class Consumer {
  readonly #queue: ConsumerQueue;
  readonly #handler: ShardHandler;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #options: Required<Omit<ConsumerOptions, "heartbeatIntervalMs">> & {
    heartbeatIntervalMs?: number;
  };
  readonly #process = new AbortController();
  readonly #receiving = new AbortController();
  readonly #inFlight = new Set<Promise<void>>();
  #heartbeat: Heartbeat | undefined;
  #state: ConsumerState = "starting";
  #slotFreed: (() => void) | undefined;
  #running: Promise<void> | undefined;
  #polling: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #fatal: unknown;
  /** On-demand workers: whether the next poll looks at the straggler queue. */
  #stragglerTurn = true;
  #stopRequestedAt: number | undefined;
  #received: (() => void) | undefined;
  /** Resolves after the first receive that SQS answered (with or without messages). */
  readonly firstReceive = new Promise<void>((resolve) => {
    this.#received = resolve;
  });

  constructor(deps: ConsumerDeps, options: ConsumerOptions) {
    this.#queue = deps.queue;
    this.#handler = deps.handler;
    this.#logger = deps.logger;
    this.#clock = deps.clock ?? systemClock;
    this.#options = {
      queues: options.queues,
      market: options.market,
      shardsInFlight: options.shardsInFlight ?? 2,
      visibilityTimeoutSeconds: options.visibilityTimeoutSeconds ?? 60,
      pollWaitSeconds: options.pollWaitSeconds ?? 20,
      stopGraceMs: options.stopGraceMs ?? 2000,
      heartbeat: options.heartbeat ?? true,
      ...(options.heartbeatIntervalMs === undefined
        ? {}
        : { heartbeatIntervalMs: options.heartbeatIntervalMs }),
    };
  }

  get state(): ConsumerState {
    return this.#state;
  }

  /** Shards running right now. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /**
   * Polls and processes until `stop()` (resolves once drained) or a fatal queue error (rejects
   * with it once drained). Calling it twice returns the same promise.
   */
  run(): Promise<void> {
    this.#running ??= this.#run();
    return this.#running;
  }

  /**
   * Stops receiving, gives in-flight shards `graceMs` to finish, then aborts the rest (they
   * flush a final checkpoint and their messages become visible again). Resolves once every
   * shard has settled and the pending long poll has ended (see the top of this file).
   * `graceMs: 0` forces: shards and the poll are aborted at once, also when stop() is already
   * under way. `reason` ends up in the shards' abort reason and the logs.
   */
  stop(options: { graceMs?: number; reason?: string } = {}): Promise<void> {
    const reason = `worker stopping${options.reason ? ` (${options.reason})` : ""}`;
    if (this.#stopping) {
      // A second, impatient stop (a second SIGTERM): no more grace.
      if (options.graceMs === 0) {
        this.#process.abort(new Error(reason));
        this.#receiving.abort(new Error(reason));
      }
      return this.#stopping;
    }
    this.#stopRequestedAt = this.#clock.now();
    this.#stopping = this.#drain(options.graceMs ?? this.#options.stopGraceMs, reason);
    return this.#stopping;
  }

  async #run(): Promise<void> {
    if (this.#state !== "starting") return;
    this.#state = "running";
    if (this.#options.heartbeat) {
      this.#heartbeat = new Heartbeat(
        { queue: this.#queue, logger: this.#logger, clock: this.#clock },
        {
          visibilityTimeoutSeconds: this.#options.visibilityTimeoutSeconds,
          ...(this.#options.heartbeatIntervalMs === undefined
            ? {}
            : { intervalMs: this.#options.heartbeatIntervalMs }),
        },
      );
    }
    this.#logger.info(
      { shardsInFlight: this.#options.shardsInFlight, queue: this.#options.queues.work },
      "worker running",
    );
    this.#polling = this.#pollLoop();
    await this.#polling;
    await this.stop();
    if (this.#fatal !== undefined) throw this.#fatal;
  }

  async #pollLoop(): Promise<void> {
    const signal = this.#receiving.signal;
    let failures = 0;
    while (this.#state === "running" && !signal.aborted) {
      await this.#freeSlot(signal);
      if (this.#state !== "running" || signal.aborted) return;
      const { queueUrl, waitSeconds } = this.#nextPoll();
      let messages: ReceivedMessage[];
      try {
        messages = await this.#queue.receive(queueUrl, {
          max: this.#options.shardsInFlight - this.#inFlight.size,
          waitSeconds,
          visibilityTimeout: this.#options.visibilityTimeoutSeconds,
          signal,
        });
        failures = 0;
        this.#received?.();
        this.#received = undefined;
        // Keep taking stragglers while there are some; once that queue is empty, the work queue.
        this.#stragglerTurn = queueUrl !== this.#options.queues.straggler || messages.length > 0;
      } catch (err) {
        if (signal.aborted || this.#state !== "running") return;
        if (FATAL_QUEUE_ERRORS.has(classifyAwsError(err))) {
          this.#logger.fatal({ err, queue: queueUrl }, "cannot receive from the work queue");
          this.#fatal = err;
          return;
        }
        failures++;
        const delay = Math.min(30_000, 500 * 2 ** Math.min(failures, 6));
        this.#logger.warn({ err, failures, retryInMs: delay }, "receive failed; retrying");
        await this.#clock.sleep(delay, signal).catch(() => {});
        continue;
      }
      if (this.#state !== "running") {
        // The poll outlived stop(): hand its messages straight back.
        await Promise.all(
          messages.map((m) =>
            this.#release(
              queueUrl,
              m.receiptHandle,
              this.#logger.child({ messageId: m.messageId }),
            ),
          ),
        );
        if (messages.length > 0) {
          this.#logger.info(
            { released: messages.length },
            "released messages received while draining",
          );
        }
        return;
      }
      for (const message of messages) this.#start(message, queueUrl);
    }
  }

  /**
   * The queue to poll next. On-demand workers exist to finish what spot capacity could not, so
   * they look at the straggler queue first, without waiting; when it is empty they long-poll the
   * work queue once, then look again. Spot workers only ever poll the work queue.
   */
  #nextPoll(): { queueUrl: string; waitSeconds: number } {
    const straggler = this.#options.queues.straggler;
    if (this.#options.market === "on-demand" && straggler && this.#stragglerTurn) {
      return { queueUrl: straggler, waitSeconds: 0 };
    }
    return { queueUrl: this.#options.queues.work, waitSeconds: this.#options.pollWaitSeconds };
  }

  /** Resolves when fewer than `shardsInFlight` shards run (or the signal aborts). */
  async #freeSlot(signal: AbortSignal): Promise<void> {
    while (
      this.#inFlight.size >= this.#options.shardsInFlight &&
      this.#state === "running" &&
      !signal.aborted
    ) {
      await new Promise<void>((resolve) => {
        const wake = () => {
          signal.removeEventListener("abort", wake);
          resolve();
        };
        this.#slotFreed = wake;
        signal.addEventListener("abort", wake, { once: true });
      });
    }
  }

  #start(message: ReceivedMessage, queueUrl: string): void {
    const task = this.#handle(message, queueUrl).finally(() => {
      this.#inFlight.delete(task);
      this.#wakePoller();
    });
    this.#inFlight.add(task);
  }

  #wakePoller(): void {
    const wake = this.#slotFreed;
    this.#slotFreed = undefined;
    wake?.();
  }

  async #handle(message: ReceivedMessage, queueUrl: string): Promise<void> {
    const { messageId, receiptHandle, body, receiveCount } = message;
    const logger = this.#logger.child({ messageId, ...idsOf(body) });
    const shard = new AbortController();
    const onStop = () => shard.abort(this.#process.signal.reason);
    this.#process.signal.addEventListener("abort", onStop, { once: true });
    // A beat that finds the receipt handle invalid: the shard is someone else's now.
    this.#heartbeat?.track(messageId, queueUrl, receiptHandle, (lost) => shard.abort(lost));
    let outcome: MessageOutcome;
    try {
      outcome = await this.#handler.process(body, {
        signal: shard.signal,
        messageId,
        receiveCount,
      });
    } catch (err) {
      outcome = outcomeOfError(err, shard.signal);
    } finally {
      this.#heartbeat?.untrack(messageId);
      this.#process.signal.removeEventListener("abort", onStop);
    }
    await this.#settle(outcome, message, queueUrl, logger);
  }

  /** The one SQS action each outcome asks for. */
  async #settle(
    outcome: MessageOutcome,
    message: ReceivedMessage,
    queueUrl: string,
    logger: Logger,
  ): Promise<void> {
    switch (outcome.kind) {
      case "delete":
        await this.#call(logger, "delete the message", () =>
          this.#queue.delete(
            queueUrl,
            message.receiptHandle,
            AbortSignal.timeout(SETTLE_TIMEOUT_MS),
          ),
        );
        return;
      case "release":
        if (outcome.why === "interrupted") {
          await this.#release(queueUrl, message.receiptHandle, logger, outcome.afterSeconds);
          const requeueMs =
            this.#stopRequestedAt === undefined
              ? undefined
              : this.#clock.now() - this.#stopRequestedAt;
          logger.info({ requeueMs }, "shard interrupted; its message is visible again");
        } else {
          // A counted error attempt or a known error: warn; the unexpected: error.
          const known =
            outcome.errorAttempts !== undefined || outcome.err instanceof ShardfleetError;
          const level = known ? "warn" : "error";
          logger[level](
            {
              err: outcome.err ?? outcome.reason,
              receiveCount: message.receiveCount,
              errorAttempts: outcome.errorAttempts,
              retryInSeconds: outcome.afterSeconds,
            },
            "shard failed; releasing its message for a retry",
          );
          await this.#release(queueUrl, message.receiptHandle, logger, outcome.afterSeconds);
        }
        return;
      case "dead-letter":
        await this.#toDlq(message, queueUrl, outcome, logger);
        return;
      case "abandon":
        logger.warn(
          { reason: outcome.reason },
          "shard lost to another worker; leaving its message alone",
        );
        return;
    }
  }

  async #toDlq(
    message: ReceivedMessage,
    queueUrl: string,
    outcome: Extract<MessageOutcome, { kind: "dead-letter" }>,
    logger: Logger,
  ): Promise<void> {
    const dlq = this.#options.queues.dlq;
    const err = outcome.err ?? outcome.reason;
    if (!dlq) {
      logger.error(
        { err },
        "invalid message and no DLQ configured; leaving it to the redrive policy",
      );
      return;
    }
    logger.warn({ err, dlq }, "invalid message; moving it to the DLQ");
    const moved = await this.#call(logger, "send the message to the DLQ", () =>
      this.#queue.sendRaw(dlq, message.body, AbortSignal.timeout(SETTLE_TIMEOUT_MS)),
    );
    // Only delete what reached the DLQ: otherwise the redrive policy is the safety net.
    if (moved) {
      await this.#call(logger, "delete the message", () =>
        this.#queue.delete(queueUrl, message.receiptHandle, AbortSignal.timeout(SETTLE_TIMEOUT_MS)),
      );
    }
  }

  /** Visible again at once (or after `delaySeconds`), so a poll here or elsewhere retries it. */
  async #release(
    queueUrl: string,
    receiptHandle: string,
    logger: Logger,
    delaySeconds = 0,
  ): Promise<void> {
    await this.#call(logger, "release the message", () =>
      this.#queue.changeVisibility(
        queueUrl,
        receiptHandle,
        delaySeconds,
        AbortSignal.timeout(SETTLE_TIMEOUT_MS),
      ),
    );
  }

  /** Runs a queue call whose failure only delays things (the message reappears on its own). */
  async #call(logger: Logger, what: string, call: () => Promise<void>): Promise<boolean> {
    try {
      await call();
      return true;
    } catch (err) {
      logger.warn({ err }, `cannot ${what}; it reappears after its visibility timeout`);
      return false;
    }
  }

  async #drain(graceMs: number, reason: string): Promise<void> {
    if (this.#state === "starting") {
      this.#state = "stopped";
      return;
    }
    this.#state = "draining";
    const busy = this.#inFlight.size > 0;
    // Idle: nothing of ours can be swallowed by a dangling poll, so end it now (see top).
    if (!busy || graceMs === 0) this.#receiving.abort(new Error(reason));
    this.#wakePoller();
    if (busy) {
      this.#logger.info(
        { inFlight: this.#inFlight.size, graceMs, reason },
        "draining in-flight shards",
      );
      const grace = new AbortController();
      await Promise.race([
        Promise.allSettled(this.#inFlight),
        this.#clock.sleep(graceMs, grace.signal).catch(() => {}),
      ]);
      grace.abort();
      if (this.#inFlight.size > 0) {
        this.#logger.warn({ inFlight: this.#inFlight.size }, "grace period over; aborting shards");
        this.#process.abort(new Error(reason));
        await Promise.allSettled(this.#inFlight);
      }
    }
    // The pending poll (if any) ends within pollWaitSeconds; what it caught is released.
    await this.#polling;
    this.#receiving.abort(new Error("worker stopped"));
    this.#process.abort(new Error("worker stopped"));
    this.#heartbeat?.close();
    this.#state = this.#fatal === undefined ? "stopped" : "failed";
    this.#logger.info({ state: this.#state }, "worker stopped");
  }
}
