/**
 * What the loop observes about operations, before it plans: the manifests of unfinished
 * operations (oldest first) and every operation id that exists; the per-operation shard
 * observations (../observe.ts) combined into the policy's operation states plus each instance's
 * activity across operations; and, after a restart, a wait recorded in a fleet record carried over
 * into the policy's (empty) memory so its capacity deadline still counts from when it began.
 */
import { mapLimit } from "../../../shared/async.ts";
import type { FinishedOperations } from "../../../shared/finished-operations.ts";
import type { Logger } from "../../../shared/logger.ts";
import type { ObjectStore } from "../../../shared/object-store.ts";
import type { CapacityWait } from "../../../shared/schemas/fleet.ts";
import {
  type LifecycleStatus,
  type Manifest,
  TERMINAL_STATUSES,
} from "../../../shared/schemas/operation.ts";
import { listOperationIds, loadManifest } from "../../operations.ts";
import type { InstanceActivity, ShardObservation } from "../observe.ts";
import type { FleetMemory, OperationState } from "../policy.ts";

/** Statuses of operations that still need (or will soon need) capacity. */
const ACTIVE: ReadonlySet<LifecycleStatus> = new Set(["queued", "splitting", "running"]);

/**
 * Manifests of operations that need capacity, oldest first; every manifest read this pass
 * (`read`: on the first pass, every operation's, whatever its state — what a restarted manager
 * adopts from); and every operation id that exists. An operation found finished joins `terminal`
 * and is not read again (until its recheck); one no longer listed (deleted) leaves it.
 */
export async function observeOperations(
  deps: {
    store: ObjectStore;
    logger: Logger;
    terminal: FinishedOperations;
    /**
     * Read finished operations too (the first pass, which adopts instances from every fleet
     * record: the set may be shared with the scheduler's loop, which may have filled it).
     */
    readFinished?: boolean;
  },
  signal: AbortSignal,
): Promise<{ manifests: Manifest[]; read: Manifest[]; existing: Set<string> }> {
  const ids = await listOperationIds(deps.store, signal);
  const existing = new Set(ids);
  deps.terminal.retain(existing);
  const open = (deps.readFinished ? ids : ids.filter((id) => !deps.terminal.has(id))).reverse();
  const loaded = await mapLimit(open, 8, async (id) => {
    try {
      return await loadManifest(deps.store, id, signal);
    } catch (err) {
      if (signal.aborted) throw err;
      deps.logger.warn({ err, operationId: id }, "manifest unreadable; not sized this pass");
      return undefined;
    }
  });
  const manifests: Manifest[] = [];
  const read: Manifest[] = [];
  for (const m of loaded) {
    if (!m) continue;
    read.push(m);
    if (TERMINAL_STATUSES.has(m.status)) deps.terminal.add(m.id);
    else {
      // Settles a recheck this pass claimed: it runs again, so every loop reads it.
      deps.terminal.delete(m.id);
      if (ACTIVE.has(m.status)) manifests.push(m);
    }
  }
  return { manifests, read, existing };
}

/** The operations as the policy sees them, and each instance's activity summed over them. */
export function combineObservations(observed: readonly ShardObservation[]): {
  operations: OperationState[];
  activity: Map<string, InstanceActivity>;
} {
  const operations: OperationState[] = [];
  const activity = new Map<string, InstanceActivity>();
  for (const o of observed) {
    operations.push(o.state);
    for (const [id, act] of o.activity) {
      const sum = activity.get(id) ?? { running: 0 };
      sum.running += act.running;
      if (act.lastEndedAt !== undefined)
        sum.lastEndedAt = Math.max(sum.lastEndedAt ?? 0, act.lastEndedAt);
      activity.set(id, sum);
    }
  }
  return { operations, activity };
}

/**
 * After a restart the policy's memory is empty: carry the wait recorded in the operation's fleet
 * record over, so its capacity deadline still counts from when it began — or from the operation's
 * last resume, if later: the deadline does not run while an operation is paused (a paused
 * operation leaves the policy's memory, and its recorded wait may predate the pause).
 */
export function seedWaiting(
  memory: FleetMemory,
  operationId: string,
  waiting: CapacityWait | undefined,
  resumedAt?: string,
): FleetMemory {
  if (!waiting || memory.operations[operationId]) return memory;
  const since = Math.max(Date.parse(waiting.since), resumedAt ? Date.parse(resumedAt) : 0);
  return {
    ...memory,
    operations: {
      ...memory.operations,
      [operationId]: { unfulfilledSince: since, waiting: waiting.reason },
    },
  };
}
