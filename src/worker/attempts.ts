/**
 * Attempt classification, the pure side: how an attempt ended, which earlier attempts died
 * without a word, and when a shard is poison.
 *
 * Causes (attemptSchema):
 *   completed    this attempt's commit won
 *   interrupted  the worker was told to stop (spot notice, rebalance, SIGTERM): a final
 *                checkpoint was flushed and the message released
 *   lost         the worker stopped owning the shard: its receipt handle went stale (no
 *                heartbeat got through: the message was redelivered), another worker committed
 *                the shard first (error "shard committed by another worker"), or it died
 *                without a word (relabelled from `running` by the next worker, see below)
 *   error        the attempt failed on its own: unreadable slice, a plugin that fails to load, a
 *                worker thread that crashed, any unexpected exception. Only these count towards
 *                the operation's `maxErrorAttempts`: a shard reclaimed ten times is not poison.
 */
import { ShardLostError } from "../shared/errors.ts";
import type { Attempt } from "../shared/schemas/shard.ts";

/** The error of a `lost` attempt that stopped because another worker committed the shard. */
export const COMMITTED_ELSEWHERE = "shard committed by another worker";

/** How an attempt that did not complete ended, from the shard's abort signal. */
export function causeOfStop(signal: AbortSignal): "interrupted" | "lost" | "error" {
  if (!signal.aborted) return "error";
  return signal.reason instanceof ShardLostError ? "lost" : "interrupted";
}

export interface StaleAttemptContext {
  now: number;
  /** This worker's instance id. */
  instanceId: string;
  /** Attempts running in this process right now (never relabelled). */
  live: ReadonlySet<string>;
  /** The message being processed, and how often SQS has delivered it. */
  messageId?: string | undefined;
  receiveCount?: number | undefined;
  /** A running attempt of another instance silent for longer than this is gone. */
  staleAfterMs: number;
}

/**
 * Why a `running` attempt is known to be dead, or undefined when it may still be alive:
 * - it ran under this very message, which SQS delivered again: its visibility lapsed, so its
 *   heartbeat stopped (a worker that is alive after all learns so at its next beat, stops, and
 *   records its own cause);
 * - it ran on this instance but not in this process: an earlier process that died;
 * - it has shown no sign of life (checkpoint refresh) for `staleAfterMs`.
 * Attempts of other live workers (a straggler copy, a duplicate delivery) are left alone.
 */
export function whyLost(attempt: Attempt, ctx: StaleAttemptContext): string | undefined {
  if (attempt.cause !== "running" || ctx.live.has(attempt.attemptId)) return undefined;
  if (
    ctx.messageId !== undefined &&
    attempt.messageId === ctx.messageId &&
    (ctx.receiveCount ?? 1) > 1
  ) {
    return "no heartbeat: its message was delivered again";
  }
  if (attempt.instanceId === ctx.instanceId) {
    return "its worker process on this instance is gone";
  }
  const lastSign = Date.parse(attempt.updatedAt ?? attempt.startedAt);
  if (Number.isFinite(lastSign) && ctx.now - lastSign > ctx.staleAfterMs) {
    return `no sign of life for ${Math.round((ctx.now - lastSign) / 1000)} s`;
  }
  return undefined;
}

/** Attempts that ended in an error: the poison count. */
export function errorAttempts(attempts: readonly Attempt[]): number {
  return attempts.filter((a) => a.cause === "error").length;
}

/** Delay before the next try after the `n`-th error attempt: 2^n s, capped. */
export function retryDelaySeconds(errorCount: number, capSeconds = 300): number {
  return Math.min(capSeconds, 2 ** Math.max(1, Math.min(errorCount, 20)));
}

/**
 * How long a `running` attempt of another instance may show no sign of life before it is
 * known gone: twice the queue's visibility timeout, and at least two minutes.
 */
export function staleAfterMs(visibilityTimeoutSeconds: number): number {
  return Math.max(120_000, 2 * 1000 * visibilityTimeoutSeconds);
}
