/**
 * The worker report (`keys.workerReport`): an instance's worker says it is up, once, after its
 * first receive from the work queue. Written only by that worker
 * (src/shared/records/worker-report.ts); the fleet manager reads that it exists.
 */
import { z } from "zod";

export const workerReportSchema = z.object({
  v: z.literal(1),
  instanceId: z.string().min(1),
  market: z.enum(["spot", "on-demand"]),
  /** The worker's clock: for people reading it; the fleet manager uses its own. */
  firstReceiveAt: z.iso.datetime(),
});
export type WorkerReport = z.infer<typeof workerReportSchema>;
