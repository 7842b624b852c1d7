/**
 * What an operation's events stream sends next: a pure function of the client's position (the
 * SSE `Last-Event-ID`) and the records as they are now. Ids are derived from the records, not
 * from a counter in this process, so a client that reconnects (to this scheduler or to the next
 * one after a restart) gets exactly what it has not seen:
 * - fleet events by their number in the fleet record (`droppedEvents + index`): each once;
 * - the status when it differs from the last one sent;
 * - a progress snapshot when the counters differ from the last one sent (snapshots are state,
 *   not a log: the newest one is what matters).
 * The id after an event is the whole position: `f<next fleet seq>.<status>.<rows done>.<shards
 * done+failed>`.
 */

import type {
  FleetStreamEvent,
  ProgressEvent,
  SourceEvent,
  StatusEvent,
  StreamEventName,
} from "../../shared/contracts/events.ts";
import type { OperationView } from "../../shared/contracts/operations.ts";
import { type OperationStatus, operationStatuses } from "../../shared/schemas/operation.ts";

export interface StreamPosition {
  /** The next fleet event number to send. */
  fleetNext: number;
  /** The last status sent. */
  status?: OperationStatus;
  /** The progress counters last sent (rows done, shards done + failed, rows failed). */
  progress?: string;
}

export const START: StreamPosition = { fleetNext: 0 };

export interface StreamEvent {
  id: string;
  event: StreamEventName;
  data: StatusEvent | ProgressEvent | FleetStreamEvent;
}

const STATUSES: ReadonlySet<string> = new Set(operationStatuses);

export function formatPosition(p: StreamPosition): string {
  return `f${p.fleetNext}.${p.status ?? "-"}.${p.progress ?? "-"}`;
}

/** The position a `Last-Event-ID` names; the start for anything else (a fresh replay). */
export function parsePosition(id: string | undefined): StreamPosition {
  const m =
    id === undefined ? null : /^f(\d{1,9})\.([a-z-]+)\.(-|\d{1,9}_\d{1,9}_\d{1,9})$/.exec(id);
  if (!m) return START;
  const [, fleet, status, progress] = m;
  return {
    fleetNext: Number(fleet),
    ...(status && STATUSES.has(status) ? { status: status as OperationStatus } : {}),
    ...(progress && progress !== "-" ? { progress } : {}),
  };
}

function progressKey(view: OperationView): string {
  return `${view.rows.done}_${view.shards.done + view.shards.failed}_${view.rows.failed}`;
}

/**
 * The events a client at `from` has not seen, oldest first, each with the id of the position
 * after it, and the position after them all. Fleet events come first (they happened before the
 * snapshot was read), then progress, then status (so the final status is the last event).
 */
export function eventsSince(
  from: StreamPosition,
  view: OperationView,
  droppedEvents: number,
): { events: StreamEvent[]; position: StreamPosition } {
  const events: StreamEvent[] = [];
  let pos: StreamPosition = { ...from };
  const fleet = view.events ?? [];
  // Events dropped from the record before the client saw them cannot be replayed: start at the
  // oldest kept one.
  for (
    let seq = Math.max(pos.fleetNext, droppedEvents);
    seq < droppedEvents + fleet.length;
    seq++
  ) {
    const e = fleet[seq - droppedEvents];
    if (!e) continue;
    pos = { ...pos, fleetNext: seq + 1 };
    events.push({ id: formatPosition(pos), event: "fleet", data: { ...e, seq } });
  }
  const progress = progressKey(view);
  if (progress !== pos.progress) {
    pos = { ...pos, progress };
    events.push({
      id: formatPosition(pos),
      event: "progress",
      data: { rows: view.rows, shards: view.shards },
    });
  }
  if (view.status !== pos.status) {
    pos = { ...pos, status: view.status };
    events.push({
      id: formatPosition(pos),
      event: "status",
      data: {
        status: view.status,
        finishedAt: view.finishedAt,
        ...(view.error ? { error: view.error } : {}),
        ...(view.waiting ? { waiting: view.waiting } : {}),
      },
    });
  }
  return { events, position: pos };
}

/**
 * The `source` event to send when what the source sees changed since `last` (the key of the one
 * sent before; undefined: none yet), with its key. An empty list is sent only to clear one sent
 * before (the workers left). No id: it is state, not part of the resumable position.
 */
export function sourceEventSince(
  last: string | undefined,
  view: OperationView,
): { event: { event: "source"; data: SourceEvent }; key: string } | undefined {
  const origins = view.source ?? [];
  const key = JSON.stringify(origins);
  if (key === last || (last === undefined && origins.length === 0)) return undefined;
  return { event: { event: "source", data: { origins } }, key };
}

/** One event in the SSE wire format (data is one JSON line: no newline can split it). */
export function sseFrame(e: { id?: string; event: string; data: unknown }): string {
  return `${e.id === undefined ? "" : `id: ${e.id}\n`}event: ${e.event}\ndata: ${JSON.stringify(e.data)}\n\n`;
}
