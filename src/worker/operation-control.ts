/**
 * What a worker knows of an operation's control state (cancel, pause), from the manifest it
 * already reads for the operation (./operation-cache.ts refreshes it while shards of it run).
 * A shard takes `signal` when it starts: it aborts, with a `ControlStop` value as its reason,
 * when the operation is paused or cancelled, and the shard stops at the next row boundary,
 * flushes its checkpoint and resolves the outcome `stopOutcome` names. A resume gives later
 * shards a fresh signal.
 */
import type { LifecycleStatus } from "../shared/schemas/operation.ts";
import type { MessageOutcome } from "./shard-outcome.ts";

/** Seconds a shard of a paused operation stays out of sight before it is looked at again. */
export const PAUSED_RELEASE_S = 10;

/** Why a shard was stopped by its operation's control state: the signal's reason. */
export interface ControlStop {
  readonly stop: "pause" | "cancel";
  readonly status: LifecycleStatus;
}

/** The stop a status asks of running shards, if any. */
export function stopFor(status: LifecycleStatus): ControlStop["stop"] | undefined {
  if (status === "paused") return "pause";
  if (status === "cancelling" || status === "cancelled") return "cancel";
  return undefined;
}

/** Whether `reason` (an abort reason) is a control stop. */
export function isControlStop(reason: unknown): reason is ControlStop {
  return (
    typeof reason === "object" &&
    reason !== null &&
    "stop" in reason &&
    ((reason as ControlStop).stop === "pause" || (reason as ControlStop).stop === "cancel")
  );
}

/**
 * The message outcome of a shard stopped by its operation: a cancelled operation's shards are
 * dropped (delete: its rows are `cancelled` in the partial output); a paused one's come back
 * later (release after PAUSED_RELEASE_S) and resume from their checkpoint.
 */
export function stopOutcome(stop: ControlStop): MessageOutcome {
  return stop.stop === "cancel"
    ? { kind: "delete" }
    : {
        kind: "release",
        afterSeconds: PAUSED_RELEASE_S,
        why: "interrupted",
        reason: `operation ${stop.status}`,
      };
}

/** One operation's control state in this worker. */
export class OperationControl {
  #controller = new AbortController();
  #checkedAt = Number.NEGATIVE_INFINITY;

  /** Aborts (reason: a ControlStop) once the operation is known paused or cancelled. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** When the status was last read (ms). */
  get checkedAt(): number {
    return this.#checkedAt;
  }

  /** The status just read from the manifest. */
  update(status: LifecycleStatus, now: number): void {
    this.#checkedAt = now;
    const stop = stopFor(status);
    if (stop && !this.#controller.signal.aborted) {
      this.#controller.abort({ stop, status } satisfies ControlStop);
    } else if (!stop && this.#controller.signal.aborted) {
      // Resumed: shards that start from now on run.
      this.#controller = new AbortController();
    }
  }
}
