/**
 * The worker report (`keys.workerReport`): the only code that writes it (a worker, once, after
 * its first receive) and reads it (the fleet manager, for instances it has not heard of yet).
 * Idle time counts from it: an instance whose worker took long to start on a loaded machine is
 * not "idle" meanwhile, and one that never reports goes at the boot deadline instead.
 */
import type { Clock } from "../clock.ts";
import { keys } from "../keys.ts";
import type { ObjectStore } from "../object-store.ts";
import { workerReportSchema } from "../schemas/worker-report.ts";

/** The worker's write: its instance is up and has received from the work queue. */
export async function writeWorkerReport(
  deps: { store: ObjectStore; clock: Clock },
  worker: { instanceId: string; market: "spot" | "on-demand" },
  signal?: AbortSignal,
): Promise<void> {
  await deps.store.putJson(
    keys.workerReport(worker.instanceId),
    workerReportSchema,
    {
      v: 1,
      instanceId: worker.instanceId,
      market: worker.market,
      firstReceiveAt: new Date(deps.clock.now()).toISOString(),
    },
    signal,
  );
}

/** Whether the instance's worker has reported (one HEAD). */
export function hasWorkerReported(
  store: ObjectStore,
  instanceId: string,
  signal?: AbortSignal,
): Promise<boolean> {
  return store.exists(keys.workerReport(instanceId), signal);
}
