/**
 * What the fleet manager observes of a budgeted operation's source, for the source cap
 * (../policy/source-cap.ts): for each operation whose http-enrich task has a `rateLimit`, the
 * budget and what its live workers measured — each worker's adaptive concurrency and mean
 * latency per origin, from their budget-peer records (the same records the status sums). An
 * operation without a budget is not looked at (one LIST and a GET per worker per pass for those
 * that have one).
 */
import { mapLimit } from "../../../shared/async.ts";
import type { Logger } from "../../../shared/logger.ts";
import type { ObjectStore } from "../../../shared/object-store.ts";
import type { BudgetPeer } from "../../../shared/schemas/budget.ts";
import { currentTask, type Manifest } from "../../../shared/schemas/operation.ts";
import { readBudgetPeers } from "../../source-view.ts";
import type { SourceBudget } from "../policy/source-cap.ts";

/** The budget of an operation's task, requests a second, if it has one. */
function budgetOf(manifest: Manifest): number | undefined {
  try {
    const task = currentTask(manifest);
    return task.name === "http-enrich" ? task.options.rateLimit?.requestsPerSecond : undefined;
  } catch {
    // A spec this release cannot read is sized from its backlog, as before.
    return undefined;
  }
}

/** The workers' measurements in their records, per origin (pure). */
function measuredOf(records: readonly BudgetPeer[]): SourceBudget["measured"] {
  return records.flatMap((r) =>
    r.origins.flatMap((o) =>
      o.latencyMs === undefined
        ? []
        : [{ origin: o.origin, concurrency: o.concurrency, latencyMs: o.latencyMs }],
    ),
  );
}

/**
 * Each budgeted operation's source budget, by operation id. `previous` (the last pass's) stands
 * in for records that cannot be read this pass.
 */
export async function observeSources(
  deps: { store: Pick<ObjectStore, "listModified" | "getJson">; logger: Logger },
  manifests: readonly Manifest[],
  now: number,
  signal: AbortSignal,
  previous: ReadonlyMap<string, SourceBudget> = new Map(),
): Promise<Map<string, SourceBudget>> {
  const budgeted = manifests.flatMap((m) => {
    const requestsPerSecond = budgetOf(m);
    return requestsPerSecond === undefined ? [] : [{ id: m.id, requestsPerSecond }];
  });
  const read = await mapLimit(budgeted, 4, async ({ id, requestsPerSecond }) => {
    try {
      const records = await readBudgetPeers(deps.store, id, now, signal);
      return [id, { requestsPerSecond, measured: measuredOf(records) }] as const;
    } catch (err) {
      if (signal.aborted) throw err;
      // Unread this pass: sized as at the last pass (or as before any measurement: one batch
      // at most), never unbounded.
      deps.logger.warn({ err, operationId: id }, "budget-peer records unreadable this pass");
      return [id, previous.get(id) ?? { requestsPerSecond, measured: [] }] as const;
    }
  });
  return new Map(read);
}
