/**
 * Attempt records, the I/O side (the pure side is ./attempts.ts): listing a shard's records,
 * relabelling earlier `running` attempts whose worker is known to be gone as `lost` (the dead
 * cannot say so themselves), and writing an attempt's end. All best effort: the records are
 * for people, the scheduler and the poison count, never worth failing a shard over.
 *
 * `liveAttempts` is process-wide on purpose: every ShardProcessor in the process registers its
 * running attempts there, so a sibling never relabels them.
 */
import type { Clock } from "../shared/clock.ts";
import { keys } from "../shared/keys.ts";
import type { Logger } from "../shared/logger.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import { type Attempt, attemptSchema, type ShardMessage } from "../shared/schemas/shard.ts";
import { whyLost } from "./attempts.ts";

/** Attempts running in this process: never relabelled `lost` by a sibling. */
export const liveAttempts = new Set<string>();

export interface AttemptRecordsDeps {
  store: ObjectStore;
  clock: Clock;
}

export interface AttemptRecordsOptions {
  /** This worker's instance id (named in relabelled records). */
  instanceId: string;
  /** A `running` attempt of another instance silent for longer than this is gone. */
  staleAfterMs: number;
}

/** The delivery an attempt runs under: its abort signal and the SQS message, when known. */
export interface AttemptDelivery {
  signal: AbortSignal;
  messageId?: string | undefined;
  receiveCount?: number | undefined;
}

export class AttemptRecords {
  readonly #store: ObjectStore;
  readonly #clock: Clock;
  readonly #options: AttemptRecordsOptions;

  constructor(deps: AttemptRecordsDeps, options: AttemptRecordsOptions) {
    this.#store = deps.store;
    this.#clock = deps.clock;
    this.#options = options;
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

  /** Relabels `running` attempts whose worker is known to be gone as `lost` (best effort). */
  async relabelLost(message: ShardMessage, ctx: AttemptDelivery, logger: Logger): Promise<void> {
    try {
      const attempts = await this.list(message, ctx.signal);
      const now = this.#clock.now();
      for (const attempt of attempts) {
        const why = whyLost(attempt, {
          now,
          instanceId: this.#options.instanceId,
          live: liveAttempts,
          messageId: ctx.messageId,
          receiveCount: ctx.receiveCount,
          staleAfterMs: this.#options.staleAfterMs,
        });
        if (why === undefined) continue;
        await this.#store.putJson(
          keys.attempt(message.operationId, message.shardId, attempt.attemptId),
          attemptSchema,
          {
            ...attempt,
            cause: "lost",
            endedAt: new Date(now).toISOString(),
            error: `relabelled by ${this.#options.instanceId}: ${why}`,
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

  /** Best effort: the attempt record is for people and the scheduler, never worth a retry. */
  async end(
    key: string,
    attempt: Attempt,
    cause: Attempt["cause"],
    error: string | undefined,
    logger: Logger,
  ): Promise<void> {
    const now = new Date(this.#clock.now()).toISOString();
    const ended: Attempt = {
      ...attempt,
      cause,
      endedAt: now,
      updatedAt: now,
      ...(error === undefined ? {} : { error }),
    };
    try {
      // Its own short deadline: the shard's signal may be the reason we are here.
      await this.#store.putJson(key, attemptSchema, ended, AbortSignal.timeout(10_000));
    } catch (err) {
      logger.warn({ err, attemptId: attempt.attemptId }, "cannot write the attempt record");
    }
  }
}
