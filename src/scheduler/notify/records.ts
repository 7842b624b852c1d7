/**
 * The notification records' one owner. One record per event of an operation
 * (`keys.notification`), created with If-None-Match: * before anything is sent: whoever
 * creates it sends the event, so a second scheduler (or a restart mid-pass) never sends it
 * twice. Only that creator rewrites it, with the outcomes.
 */
import type { Clock } from "../../shared/clock.ts";
import { keys } from "../../shared/keys.ts";
import type { ObjectStore } from "../../shared/object-store.ts";
import {
  type Delivery,
  NOTIFY_EVENTS,
  type NotificationRecord,
  type NotifyEvent,
  notificationRecordSchema,
} from "../../shared/schemas/notify.ts";

export class NotificationRecords {
  readonly #store: ObjectStore;
  readonly #clock: Clock;

  constructor(deps: { store: ObjectStore; clock: Clock }) {
    this.#store = deps.store;
    this.#clock = deps.clock;
  }

  #now(): string {
    return new Date(this.#clock.now()).toISOString();
  }

  /** Events already recorded for the operation (sending, sent or skipped): one LIST. */
  async recorded(operationId: string, signal?: AbortSignal): Promise<Set<NotifyEvent>> {
    const prefix = keys.notificationsPrefix(operationId);
    const found = new Set<NotifyEvent>();
    for (const key of await this.#store.list(prefix, signal)) {
      const name = key.slice(prefix.length, -".json".length);
      const event = NOTIFY_EVENTS.find((e) => e === name);
      if (event) found.add(event);
    }
    return found;
  }

  /**
   * Claims the event for sending: true when this call created its record (the caller must now
   * send it and `finish`), false when it was already recorded.
   */
  async claim(
    operationId: string,
    event: NotifyEvent,
    signal?: AbortSignal,
  ): Promise<string | undefined> {
    const claimedAt = this.#now();
    const created = await this.#store.putJsonIfAbsent(
      keys.notification(operationId, event),
      notificationRecordSchema,
      { v: 1, operationId, event, claimedAt, state: "sending", deliveries: [] },
      signal,
    );
    return created ? claimedAt : undefined;
  }

  /** Records an event that is not sent, and why; false when it was already recorded. */
  skip(
    operationId: string,
    event: NotifyEvent,
    reason: string,
    signal?: AbortSignal,
  ): Promise<boolean> {
    return this.#store.putJsonIfAbsent(
      keys.notification(operationId, event),
      notificationRecordSchema,
      {
        v: 1,
        operationId,
        event,
        claimedAt: this.#now(),
        state: "skipped",
        skipped: reason,
        deliveries: [],
      },
      signal,
    );
  }

  /** The outcomes of a claimed event (only its claimant calls this). */
  async finish(
    operationId: string,
    event: NotifyEvent,
    claimedAt: string,
    deliveries: readonly Delivery[],
    signal?: AbortSignal,
  ): Promise<void> {
    await this.#store.putJson(
      keys.notification(operationId, event),
      notificationRecordSchema,
      { v: 1, operationId, event, claimedAt, state: "sent", deliveries: [...deliveries] },
      signal,
    );
  }

  /** Every record of the operation, in event order. */
  async list(operationId: string, signal?: AbortSignal): Promise<NotificationRecord[]> {
    const out: NotificationRecord[] = [];
    for (const event of await this.recorded(operationId, signal)) {
      const record = await this.#store.getJson(
        keys.notification(operationId, event),
        notificationRecordSchema,
        signal,
      );
      if (record) out.push(record);
    }
    return out.sort((a, b) => NOTIFY_EVENTS.indexOf(a.event) - NOTIFY_EVENTS.indexOf(b.event));
  }
}
