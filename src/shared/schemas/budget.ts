/**
 * The budget-peer record (`keys.budgetPeer`): one per worker with rows of an `http-enrich`
 * operation in flight, written only by that worker (`src/worker/budget/budget-peers.ts`), with
 * or without a rateLimit. Workers count the fresh ones to divide the operation's request budget
 * (with a rateLimit); the scheduler sums what they say about the source for the operation's
 * status, and the fleet manager sizes a budgeted operation's fleet from them.
 */
import { z } from "zod";
import { parseBudgetPeerKey } from "../keys.ts";

/** A worker renews its record this often. */
export const BUDGET_PEER_REFRESH_MS = 2000;
/** A record not renewed for this long is a gone worker's. */
export const BUDGET_PEER_TTL_MS = 5 * BUDGET_PEER_REFRESH_MS;
/**
 * Without a rateLimit the record is only for the status and the fleet's sizing (nothing is
 * divided): renewed this often, a PUT and no LIST, well within BUDGET_PEER_TTL_MS.
 */
export const BUDGET_PEER_REPORT_MS = 4000;

/** What one worker sees of one origin. */
export const originStatsSchema = z.object({
  origin: z.string(),
  /** Requests the worker allows in flight now (adaptive concurrency), and in flight. */
  concurrency: z.number().int().nonnegative(),
  inFlight: z.number().int().nonnegative(),
  /** Requests sent since the worker's previous record, per second. */
  requestsPerSecond: z.number().nonnegative(),
  /**
   * Mean latency (ms) of the requests answered since the previous record (the one before when
   * none were). With `concurrency` it tells what one instance could send, whatever its budget
   * share: about concurrency ÷ latency a second (Little's law). Absent before the first answer.
   */
  latencyMs: z.number().nonnegative().optional(),
  /** Totals since the worker loaded the operation: requests, 429s, 5xx/timeouts/network errors. */
  requests: z.number().int().nonnegative(),
  throttled: z.number().int().nonnegative(),
  failed: z.number().int().nonnegative(),
  /** With a rateLimit: the worker's share now, requests a second (0 while it joins). */
  budgetShare: z.number().nonnegative().optional(),
  /** With a rateLimit: the whole fleet's budget for this origin, requests a second. */
  budget: z.number().positive().optional(),
});
export type OriginStats = z.infer<typeof originStatsSchema>;

export const budgetPeerSchema = z.object({
  v: z.literal(1),
  instanceId: z.string(),
  renewedAt: z.iso.datetime(),
  /** Live workers this worker counted at its last refresh. */
  peers: z.number().int().nonnegative(),
  origins: z.array(originStatsSchema).default([]),
});
export type BudgetPeer = z.infer<typeof budgetPeerSchema>;

/**
 * The record keys of live members in a listing of the peers prefix: renewed since `freshSince`
 * and not marked left. `except` (a member's own record) is left out.
 */
export function liveMembers(
  listed: ReadonlyArray<{ key: string; modifiedAt: number }>,
  freshSince: number,
  except?: string,
): string[] {
  const left = new Set<string>();
  for (const r of listed) {
    const parsed = parseBudgetPeerKey(r.key);
    if (parsed?.left) left.add(parsed.member);
  }
  return listed
    .filter((r) => {
      const parsed = parseBudgetPeerKey(r.key);
      return (
        parsed !== undefined &&
        !parsed.left &&
        !left.has(parsed.member) &&
        r.key !== except &&
        r.modifiedAt >= freshSince
      );
    })
    .map((r) => r.key);
}
