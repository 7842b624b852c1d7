/**
 * Operator control of one operation: cancel, pause, resume. Each is one event of the operation
 * state machine (./operation-lifecycle.ts), applied as a conditional write; what follows is the
 * scheduler's and the workers' business (they read the manifest they already read):
 *   cancel  → `cancelling`: workers stop its shards at the next row boundary and drop its
 *             messages; the scheduler writes the partial output and the cost report → `cancelled`.
 *   pause   → `paused`: workers checkpoint and release its shards, the fleet manager sizes no
 *             capacity for it; resume → `running` continues from the checkpoints.
 * Asking for the state the operation is already in (or moving to) is answered as done
 * (`already`), so a retried request is harmless; any other refusal names the state found.
 */
import { InvalidStateError, NotFoundError, RetryableError } from "../shared/errors.ts";
import type { LifecycleStatus } from "../shared/schemas/operation.ts";
import type { LifecycleEvent, OperationLifecycle } from "./operation-lifecycle.ts";

export const controlActions = ["cancel", "pause", "resume"] as const;
export type ControlAction = (typeof controlActions)[number];

/** The event each action applies, and the states in which it counts as done already. */
const ACTIONS: Record<ControlAction, { event: LifecycleEvent; already: LifecycleStatus[] }> = {
  cancel: { event: "cancel", already: ["cancelling", "cancelled"] },
  pause: { event: "pause", already: ["paused"] },
  resume: { event: "resume", already: ["running"] },
};

/** `applied`: this request moved the operation; `already`: it was in that state already. */
export type ControlOutcome = { outcome: "applied" | "already"; status: LifecycleStatus };

/**
 * Applies `action` to operation `id` (the caller has checked the viewer may see it) at `now`
 * (a resume records it: the capacity deadline does not run while paused). Throws
 * NotFoundError (gone), InvalidStateError (409, naming the state), RetryableError (contended).
 */
export async function controlOperation(
  lifecycle: Pick<OperationLifecycle, "apply">,
  id: string,
  action: ControlAction,
  now: number,
  signal?: AbortSignal,
): Promise<ControlOutcome> {
  const { event, already } = ACTIONS[action];
  const patch = action === "resume" ? { resumedAt: new Date(now).toISOString() } : {};
  const result = await lifecycle.apply(id, event, patch, signal);
  switch (result.outcome) {
    case "applied":
      return { outcome: "applied", status: result.manifest.status };
    case "not-allowed":
      if (already.includes(result.from)) return { outcome: "already", status: result.from };
      throw new InvalidStateError(`cannot ${action} operation ${id}: it is ${result.from}`, {
        details: { id, status: result.from, action },
      });
    case "gone":
      throw new NotFoundError(`operation ${id} not found`, { details: { id } });
    case "contended":
      throw new RetryableError(`operation ${id} is changing; try ${action} again`);
  }
}
