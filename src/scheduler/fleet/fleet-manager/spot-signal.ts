/**
 * Applying an EC2 spot signal from EventBridge (../spot-events.ts consumes the queue) to the
 * fleet manager's instances: mark the instance (../policy/spot-signals.ts folds the mark in
 * idempotently), record a fleet event, and write the fleet record before answering, so the
 * consumer may delete the message. The next plan sees the mark: an instance warned of an
 * interruption is replaced at once; one with a rebalance recommendation is scaled in first.
 */
import { RetryableError } from "../../../shared/errors.ts";
import type { SpotSignal } from "../../../shared/schemas/spot-events.ts";
import { isLive, withSpotSignal } from "../policy.ts";
import type { FleetRecords } from "./fleet-records.ts";
import type { InstanceRoster } from "./instance-roster.ts";

/**
 * What became of a spot signal handed to `applySpotSignal`:
 * - `applied`: news for an instance of this fleet — marked and recorded;
 * - `duplicate`: the instance already carries that mark (a redelivery, or a second signal);
 * - `ended`: the instance is known to be gone already — nothing to do;
 * - `unknown-instance`: not an instance of this fleet (the rule sees the whole region);
 * - `not-ready`: the manager has not adopted its recorded instances yet (first pass pending):
 *   it cannot tell yet, try again shortly.
 */
export type SpotSignalOutcome =
  | "applied"
  | "duplicate"
  | "ended"
  | "unknown-instance"
  | "not-ready";

/**
 * Marks the instance, records a fleet event and writes the fleet record before resolving.
 * Idempotent: the same signal again is a `duplicate` and changes nothing.
 */
export async function applySpotSignal(
  signal: SpotSignal,
  deps: { roster: InstanceRoster; records: FleetRecords },
  abort?: AbortSignal,
): Promise<SpotSignalOutcome> {
  const { roster, records } = deps;
  if (!roster.adopted) return "not-ready";
  const t = roster.get(signal.instanceId);
  if (!t) return roster.hasEnded(signal.instanceId) ? "ended" : "unknown-instance";
  if (!isLive(t.state)) return "ended";
  const marked = withSpotSignal(t, signal);
  if (marked === t) {
    // A redelivery after a failed write finds the mark in memory but not yet in S3: write it
    // before the message may go.
    await written(records, t.operationId, abort);
    return "duplicate";
  }
  t.interruptionWarnedAt = marked.interruptionWarnedAt;
  t.rebalanceRecommendedAt = marked.rebalanceRecommendedAt;
  records.touch(t);
  const emitted = new Date(signal.at).toISOString();
  const details = { instanceId: t.id, eventId: signal.eventId, market: t.market };
  if (signal.kind === "interruption-warning") {
    // Hibernation starts at once; stop and terminate come about two minutes after the warning.
    const what =
      signal.action === "hibernate"
        ? "hibernate it now"
        : `${signal.action ?? "interrupt"} it in about two minutes`;
    records.event(
      t.operationId,
      "spot-interruption-warning",
      `spot interruption warning for ${t.id} (EventBridge): EC2 will ${what} (emitted ${emitted}); it no longer counts as capacity, so its replacement is planned now`,
      details,
    );
  } else {
    records.event(
      t.operationId,
      "rebalance-recommendation",
      `rebalance recommendation for ${t.id} (EventBridge): elevated risk of interruption (emitted ${emitted}); it keeps working, is scaled in first when not needed, and is not replaced`,
      details,
    );
  }
  await written(records, t.operationId, abort);
  return "applied";
}

/**
 * Flushes the fleet record and fails unless the operation's record was written: the consumer
 * deletes the message only when this resolves, so a failed write brings the event back.
 */
async function written(
  records: FleetRecords,
  operationId: string,
  abort?: AbortSignal,
): Promise<void> {
  await records.flush(abort);
  if (records.isPending(operationId)) {
    throw new RetryableError(`the fleet record of ${operationId} was not written yet`);
  }
}
