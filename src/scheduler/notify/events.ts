/**
 * Which notification events an operation has reached and which are due: pure functions of the
 * manifest, the subscriptions, what is already recorded, and the time.
 *
 * Events are read from the manifest rather than hooked into each status write, so no transition
 * can be missed by a writer that forgot to call a hook, and a restarted scheduler sends what is
 * still due: `accepted` once a manifest exists, `started` once `startedAt` is set (the split is
 * done and shards are queued), and the terminal status once reached.
 */

import { NOTIFY_EVENTS, type NotifyEvent, type NotifySpec } from "../../shared/schemas/notify.ts";
import type { Manifest } from "../../shared/schemas/operation.ts";

/** One party to tell: the operation's own `notify`, or the deployment's defaults. */
export interface Subscription {
  source: "spec" | "deployment";
  webhook?: string;
  email?: readonly string[];
  on: ReadonlySet<NotifyEvent>;
}

/** The deployment's defaults (SHARDFLEET_NOTIFY_*), sent for every operation. */
export interface NotifyDefaults {
  webhook?: string;
  email?: readonly string[];
  /** @default every event */
  on?: readonly NotifyEvent[];
}

function subscription(
  source: Subscription["source"],
  n: NotifyDefaults | NotifySpec,
): Subscription | undefined {
  if (!n.webhook && !(n.email && n.email.length > 0)) return undefined;
  return {
    source,
    ...(n.webhook ? { webhook: n.webhook } : {}),
    ...(n.email && n.email.length > 0 ? { email: n.email } : {}),
    on: new Set(n.on ?? NOTIFY_EVENTS),
  };
}

/** The operation's subscriptions: its spec's `notify`, then the deployment's defaults. */
export function subscriptionsOf(
  manifest: Pick<Manifest, "spec">,
  defaults: NotifyDefaults | undefined,
): Subscription[] {
  const out: Subscription[] = [];
  const own = manifest.spec.notify && subscription("spec", manifest.spec.notify);
  if (own) out.push(own);
  const deployment = defaults && subscription("deployment", defaults);
  if (deployment) out.push(deployment);
  return out;
}

/** The events the operation has reached, in order, each with when it happened. */
export function reachedEvents(manifest: Manifest): Array<{ event: NotifyEvent; at: string }> {
  const out: Array<{ event: NotifyEvent; at: string }> = [
    { event: "accepted", at: manifest.createdAt },
  ];
  if (manifest.startedAt) out.push({ event: "started", at: manifest.startedAt });
  const status = manifest.status;
  if (
    status === "succeeded" ||
    status === "succeeded-with-failures" ||
    status === "failed" ||
    status === "cancelled"
  ) {
    out.push({ event: status, at: manifest.finishedAt ?? manifest.updatedAt });
  }
  return out;
}

export interface DueEvent {
  event: NotifyEvent;
  at: string;
  /** The subscriptions that asked for it. */
  to: Subscription[];
  /**
   * Reached longer than `maxAgeMs` ago when first seen (an operation from before notifications
   * were configured, or a scheduler down for a day): recorded as skipped, never sent late.
   */
  stale: boolean;
}

/** Events reached, asked for by someone, and not yet recorded. */
export function dueEvents(
  manifest: Manifest,
  subscriptions: readonly Subscription[],
  recorded: ReadonlySet<NotifyEvent>,
  nowMs: number,
  maxAgeMs: number,
): DueEvent[] {
  const due: DueEvent[] = [];
  for (const { event, at } of reachedEvents(manifest)) {
    if (recorded.has(event)) continue;
    const to = subscriptions.filter((s) => s.on.has(event));
    if (to.length === 0) continue;
    due.push({ event, at, to, stale: nowMs - Date.parse(at) > maxAgeMs });
  }
  return due;
}
