/**
 * The attempt record's one owner (the pure side is ./attempts.ts): the only code that builds
 * and writes an attempt's body. One AttemptRecords per worker process, passed in: it starts an
 * attempt (relabelling earlier `running` attempts whose worker is known to be gone as `lost`,
 * since the dead cannot say so themselves), hands out an AttemptRecord that refreshes the
 * attempt's sign of life and ends it with its cause, and lists a shard's records for the
 * poison count. The attempts running in this process are its own state: they are never
 * relabelled. Writes other than the start are best effort: the records are for people, the
 * scheduler and the poison count, never worth failing a shard over.
 */
import { randomUUID } from "node:crypto";
import type { Clock } from "../shared/clock.ts";
import { keys } from "../shared/keys.ts";
import type { Logger } from "../shared/logger.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import {
  type Attempt,
  attemptSchema,
  RELABELLED_BY,
  type ShardMessage,
} from "../shared/schemas/shard.ts";
import { isTransientError } from "../shared/transient.ts";
import { whyLost } from "./attempts.ts";

/** Deadline of an attempt's end record: the shard's signal may be why it ends. */
const END_TIMEOUT_MS = 10_000;
/** First pause before the end record is written again after a transient fault (doubling). */
const END_RETRY_FIRST_MS = 200;

export interface AttemptRecordsDeps {
  store: ObjectStore;
  clock: Clock;
}

export interface AttemptRecordsOptions {
  /** This worker's instance id (named in its records and in relabelled ones). */
  instanceId: string;
  market: "spot" | "on-demand";
  /** A `running` attempt of another instance silent for longer than this is gone. */
  staleAfterMs: number;
}

/** The delivery an attempt runs under: its abort signal and the SQS message, when known. */
export interface AttemptDelivery {
  signal: AbortSignal;
  messageId?: string | undefined;
  receiveCount?: number | undefined;
}

/** How an attempt ended (attemptSchema's causes but `running`). */
export type AttemptEnd = Exclude<Attempt["cause"], "running">;

export class AttemptRecords {
  readonly #store: ObjectStore;
  readonly #clock: Clock;
  readonly #options: AttemptRecordsOptions;
  /** Attempts running in this process: never relabelled `lost`. */
  readonly #live = new Set<string>();

  constructor(deps: AttemptRecordsDeps, options: AttemptRecordsOptions) {
    this.#store = deps.store;
    this.#clock = deps.clock;
    this.#options = options;
  }

  /** Attempts of this process that have started and not ended. */
  get live(): ReadonlySet<string> {
    return this.#live;
  }

  /**
   * Starts an attempt at `message`: relabels the shard's dead attempts, writes this one's
   * `running` record. Rejects when that write fails or the signal aborts (nothing started).
   */
  async start(
    message: ShardMessage,
    delivery: AttemptDelivery,
    logger: Logger,
  ): Promise<AttemptRecord> {
    const now = new Date(this.#clock.now()).toISOString();
    const body: Attempt = {
      v: 1,
      attemptId: randomUUID(),
      operationId: message.operationId,
      shardId: message.shardId,
      instanceId: this.#options.instanceId,
      market: this.#options.market,
      startedAt: now,
      updatedAt: now,
      ...(delivery.messageId === undefined ? {} : { messageId: delivery.messageId }),
      rowsDone: 0,
      cause: "running",
    };
    this.#live.add(body.attemptId);
    try {
      await this.#relabelLost(message, delivery, logger);
      await this.#put(body, delivery.signal);
    } catch (err) {
      this.#live.delete(body.attemptId);
      throw err;
    }
    return new AttemptRecord(body, {
      put: (b, signal) => this.#put(b, signal),
      now: () => this.#clock.now(),
      sleep: (ms, signal) => this.#clock.sleep(ms, signal),
      ended: (id) => this.#live.delete(id),
      logger,
    });
  }

  /** Every attempt record of the shard (unreadable ones skipped). */
  async list(message: ShardMessage, signal: AbortSignal): Promise<Attempt[]> {
    const attemptKeys = await this.#store.list(
      keys.attemptsPrefix(message.operationId, message.shardId),
      signal,
    );
    const attempts = await Promise.all(
      attemptKeys.map((key) =>
        this.#store.getJson(key, attemptSchema, signal).catch(() => undefined),
      ),
    );
    return attempts.filter((a): a is Attempt => a !== undefined);
  }

  #put(body: Attempt, signal: AbortSignal): Promise<void> {
    return this.#store.putJson(
      keys.attempt(body.operationId, body.shardId, body.attemptId),
      attemptSchema,
      body,
      signal,
    );
  }

  /** Relabels `running` attempts whose worker is known to be gone as `lost` (best effort). */
  async #relabelLost(message: ShardMessage, ctx: AttemptDelivery, logger: Logger): Promise<void> {
    try {
      const attempts = await this.list(message, ctx.signal);
      const now = this.#clock.now();
      for (const attempt of attempts) {
        const why = whyLost(attempt, {
          now,
          instanceId: this.#options.instanceId,
          live: this.#live,
          messageId: ctx.messageId,
          receiveCount: ctx.receiveCount,
          staleAfterMs: this.#options.staleAfterMs,
        });
        if (why === undefined) continue;
        await this.#put(
          {
            ...attempt,
            cause: "lost",
            endedAt: new Date(now).toISOString(),
            error: `${RELABELLED_BY} ${this.#options.instanceId}: ${why}`,
          },
          ctx.signal,
        );
        logger.info(
          { attemptId: attempt.attemptId, instanceId: attempt.instanceId, why },
          "earlier attempt relabelled lost",
        );
      }
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      logger.warn({ err }, "cannot check the shard's earlier attempts");
    }
  }
}

interface AttemptRecordPort {
  put(body: Attempt, signal: AbortSignal): Promise<void>;
  now(): number;
  sleep(ms: number, signal: AbortSignal): Promise<void>;
  ended(attemptId: string): void;
  logger: Logger;
}

/** One running attempt's record: its progress, its sign of life, its end. */
export class AttemptRecord {
  readonly #port: AttemptRecordPort;
  #body: Attempt;
  /** The refresh under way: the end waits for it, so a late refresh never undoes the end. */
  #refreshing: Promise<void> | undefined;

  constructor(body: Attempt, port: AttemptRecordPort) {
    this.#body = body;
    this.#port = port;
  }

  get attemptId(): string {
    return this.#body.attemptId;
  }

  /** Who commits for this attempt (the done marker names it). */
  get committer(): Pick<Attempt, "operationId" | "shardId" | "attemptId" | "instanceId"> {
    const { operationId, shardId, attemptId, instanceId } = this.#body;
    return { operationId, shardId, attemptId, instanceId };
  }

  get rowsDone(): number {
    return this.#body.rowsDone;
  }

  get ended(): boolean {
    return this.#body.cause !== "running";
  }

  /**
   * The cursor this attempt resumes from, written at once (best effort): a hard kill before the
   * first refresh must not lose it (wasted work reads it).
   */
  async startAt(cursor: number, signal: AbortSignal): Promise<void> {
    this.#body = { ...this.#body, startCursor: cursor };
    try {
      await this.refresh(signal);
    } catch (err) {
      if (signal.aborted) throw err;
      this.#port.logger.warn(
        { err, attemptId: this.#body.attemptId },
        "cannot write the attempt record",
      );
    }
  }

  /** Rows finished (added), written with the next refresh or the end. */
  addRows(n: number): void {
    this.#body = { ...this.#body, rowsDone: this.#body.rowsDone + n };
  }

  /** All rows this attempt ran finished: exactly `n`. */
  setRows(n: number): void {
    this.#body = { ...this.#body, rowsDone: n };
  }

  /** Rewrites the running record (rows done, `updatedAt`): the attempt's sign of life. */
  async refresh(signal: AbortSignal): Promise<void> {
    if (this.ended) return;
    this.#body = { ...this.#body, updatedAt: new Date(this.#port.now()).toISOString() };
    const write = this.#port.put(this.#body, signal);
    this.#refreshing = write.catch(() => {});
    await write;
  }

  /** Ends the attempt with its cause (best effort, once; later calls do nothing). */
  async end(cause: AttemptEnd, error?: string): Promise<void> {
    if (this.ended) return;
    await this.#refreshing;
    if (this.ended) return;
    const now = new Date(this.#port.now()).toISOString();
    this.#body = {
      ...this.#body,
      cause,
      endedAt: now,
      updatedAt: now,
      ...(error === undefined ? {} : { error }),
    };
    this.#port.ended(this.#body.attemptId);
    // Retried as a whole on a transient fault, within the deadline: the SDK's own three tries
    // run out now and then under throttling, and a record left `running` is later relabelled
    // `lost`, so a completed attempt would count as wasted work.
    const deadline = AbortSignal.timeout(END_TIMEOUT_MS);
    try {
      for (let retry = 0; ; retry++) {
        try {
          await this.#port.put(this.#body, deadline);
          break;
        } catch (err) {
          if (deadline.aborted || !isTransientError(err)) throw err;
          await this.#port.sleep(Math.min(END_RETRY_FIRST_MS * 2 ** retry, 2_000), deadline);
        }
      }
    } catch (err) {
      this.#port.logger.warn(
        { err, attemptId: this.#body.attemptId },
        "cannot write the attempt record",
      );
    }
  }
}
