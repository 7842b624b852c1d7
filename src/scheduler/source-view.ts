/**
 * What an `http-enrich` operation's source sees, for its status: the sum of what the operation's
 * live workers say in their budget-peer records (`keys.budgetPeer`, written by the workers, with
 * or without a rateLimit), and with a budget the instances it keeps busy (the fleet's source cap).
 */
import { mapLimit } from "../shared/async.ts";
import type { SourceView } from "../shared/contracts/operations.ts";
import { keys } from "../shared/keys.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import {
  BUDGET_PEER_TTL_MS,
  type BudgetPeer,
  budgetPeerSchema,
  liveMembers,
} from "../shared/schemas/budget.ts";
import { sourceCap } from "./fleet/policy/source-cap.ts";

/** Sums the workers' records per origin (pure). */
export type { SourceView };

export function summarizeSource(records: readonly BudgetPeer[]): SourceView[] {
  const byOrigin = new Map<string, SourceView>();
  const latencies = new Map<string, Array<{ concurrency: number; latencyMs: number }>>();
  for (const record of records) {
    for (const o of record.origins) {
      if (o.latencyMs !== undefined) {
        latencies.set(o.origin, [
          ...(latencies.get(o.origin) ?? []),
          { concurrency: o.concurrency, latencyMs: o.latencyMs },
        ]);
      }
      const view = byOrigin.get(o.origin) ?? {
        origin: o.origin,
        workers: 0,
        requestsPerSecond: 0,
        budget: null,
        concurrency: 0,
        inFlight: 0,
        requests: 0,
        throttled: 0,
        failed: 0,
      };
      view.workers++;
      view.requestsPerSecond += o.requestsPerSecond;
      view.budget = o.budget ?? view.budget;
      view.concurrency += o.concurrency;
      view.inFlight += o.inFlight;
      view.requests += o.requests;
      view.throttled += o.throttled;
      view.failed += o.failed;
      byOrigin.set(o.origin, view);
    }
  }
  return [...byOrigin.values()]
    .map((v) => {
      const measured = latencies.get(v.origin) ?? [];
      const latencyMs =
        measured.length === 0
          ? null
          : Math.round(measured.reduce((sum, m) => sum + m.latencyMs, 0) / measured.length);
      // The fleet's own rule (./fleet/policy/source-cap.ts), for this origin's measurements.
      const cap =
        v.budget === null || measured.length === 0
          ? undefined
          : sourceCap({
              requestsPerSecond: v.budget,
              measured: measured.map((m) => ({ origin: v.origin, ...m })),
            });
      return {
        ...v,
        requestsPerSecond: Math.round(v.requestsPerSecond * 10) / 10,
        latencyMs,
        instances: cap?.measured ? cap.instances : null,
      };
    })
    .sort((a, b) => a.origin.localeCompare(b.origin));
}

/** Reads the operation's fresh budget-peer records and sums them. */
export async function readSourceView(
  store: ObjectStore,
  operationId: string,
  now: number,
  signal?: AbortSignal,
): Promise<SourceView[]> {
  return summarizeSource(await readBudgetPeers(store, operationId, now, signal));
}

/**
 * The operation's fresh budget-peer records (its live workers', one each), for the status and
 * the fleet manager's sizing. A record that cannot be read is left out.
 */
export async function readBudgetPeers(
  store: Pick<ObjectStore, "listModified" | "getJson">,
  operationId: string,
  now: number,
  signal?: AbortSignal,
): Promise<BudgetPeer[]> {
  const listed = await store.listModified(keys.budgetPeersPrefix(operationId), signal);
  const fresh = liveMembers(listed, now - BUDGET_PEER_TTL_MS);
  const records = await mapLimit(fresh, 8, async (key) => {
    try {
      return await store.getJson(key, budgetPeerSchema, signal);
    } catch {
      // A record from another version, or deleted meanwhile: the reader does without it.
      return undefined;
    }
  });
  return records.filter((r): r is BudgetPeer => r !== undefined);
}
