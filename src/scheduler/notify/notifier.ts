/**
 * The notifier: a loop beside the scheduler's that reads each unfinished operation's manifest,
 * works out which events it has reached that someone asked to hear about (./events.ts), claims
 * each in its notification record (./records.ts, If-None-Match: *) and sends it by webhook and
 * email. It never writes a manifest: a notification cannot fail, delay or change an operation.
 * A delivery that fails after its retries is logged and kept in the event's record, which
 * `GET /operations/:id/notifications` shows.
 *
 * Lifecycle: idle → running (start) → draining (stop: the pass in flight ends) → stopped.
 */
import { randomUUID } from "node:crypto";
import { mapLimit } from "../../shared/async.ts";
import type { Clock } from "../../shared/clock.ts";
import { keys } from "../../shared/keys.ts";
import type { Logger } from "../../shared/logger.ts";
import type { ObjectStore } from "../../shared/object-store.ts";
import { PeriodicService, type ServiceState } from "../../shared/periodic-service.ts";
import { type CostReport, costReportSchema } from "../../shared/schemas/cost.ts";
import type { Delivery } from "../../shared/schemas/notify.ts";
import { type Manifest, TERMINAL_STATUSES } from "../../shared/schemas/operation.ts";
import { listOperationIds, loadManifest } from "../operations.ts";
import type { EmailSender } from "./email.ts";
import { type DueEvent, dueEvents, type NotifyDefaults, subscriptionsOf } from "./events.ts";
import { emailContent, webhookPayload } from "./message.ts";
import { NotificationRecords } from "./records.ts";
import type { DeliveryOutcome } from "./retry.ts";
import type { WebhookSender } from "./webhook.ts";

export interface NotifierDeps {
  store: ObjectStore;
  logger: Logger;
  clock: Clock;
  /** Sends webhooks. @default undefined (webhook deliveries are recorded as failed: off) */
  webhook?: WebhookSender;
  /** Sends email. @default undefined (email deliveries are recorded as failed: off) */
  email?: EmailSender;
  /** Delivery ids. @default randomUUID */
  newId?: () => string;
}

export interface NotifierOptions {
  /** Sent for every operation besides its own `notify` (SHARDFLEET_NOTIFY_*). @default none */
  defaults?: NotifyDefaults;
  /** The scheduler's public base URL, for links (SHARDFLEET_PUBLIC_URL). @default no link */
  linkBase?: string;
  /** Pause between passes. @default 2000 */
  intervalMs?: number;
  /** An event first seen longer ago than this is recorded as skipped, not sent. @default 1 day */
  maxAgeMs?: number;
  /** How long a final event waits for the operation's cost report before going without. @default 30000 */
  costWaitMs?: number;
}

export type NotifierState = ServiceState;

/** Webhook targets are logged and recorded by origin only: a path may hold a secret (Slack). */
function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return "(invalid URL)";
  }
}

export class Notifier {
  readonly #deps: NotifierDeps;
  readonly #records: NotificationRecords;
  readonly #options: Required<Omit<NotifierOptions, "defaults" | "linkBase">> &
    Pick<NotifierOptions, "defaults" | "linkBase">;
  /** Operations with nothing left to send, ever: not read again by this process. */
  readonly #settled = new Set<string>();
  readonly #service: PeriodicService;
  #closed = false;

  constructor(deps: NotifierDeps, options: NotifierOptions = {}) {
    this.#deps = deps;
    this.#records = new NotificationRecords({ store: deps.store, clock: deps.clock });
    this.#options = {
      ...(options.defaults ? { defaults: options.defaults } : {}),
      ...(options.linkBase ? { linkBase: options.linkBase } : {}),
      intervalMs: options.intervalMs ?? 2_000,
      maxAgeMs: options.maxAgeMs ?? 86_400_000,
      costWaitMs: options.costWaitMs ?? 30_000,
    };
    this.#service = new PeriodicService(
      { clock: deps.clock, logger: deps.logger },
      { name: "notifier", intervalMs: this.#options.intervalMs, errorLevel: "warn" },
      (signal) => this.tick(signal),
    );
  }

  get state(): NotifierState {
    return this.#service.state;
  }

  start(): void {
    this.#service.start({ intervalMs: this.#options.intervalMs });
  }

  /** Stops the loop (a delivery in flight is aborted; its record stays `sending`), closes senders. */
  async stop(): Promise<void> {
    await this.#service.stop();
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([this.#deps.webhook?.close(), this.#deps.email?.close()]);
  }

  /** One pass over every operation with something left to send (public so tests drive it). */
  async tick(signal: AbortSignal = this.#service.signal): Promise<void> {
    const ids = (await listOperationIds(this.#deps.store, signal))
      .filter((id) => !this.#settled.has(id))
      .reverse();
    await mapLimit(ids, 4, async (id) => {
      try {
        await this.#visit(id, signal);
      } catch (err) {
        if (signal.aborted) throw err;
        this.#deps.logger.warn(
          { err, operationId: id },
          "could not send an operation's notifications; retrying next pass",
        );
      }
    });
  }

  async #visit(id: string, signal: AbortSignal): Promise<void> {
    const manifest = await loadManifest(this.#deps.store, id, signal);
    if (!manifest) return; // a submission in flight
    const subscriptions = subscriptionsOf(manifest, this.#options.defaults);
    const terminal = TERMINAL_STATUSES.has(manifest.status);
    if (subscriptions.length === 0) {
      // Its spec never changes, nor do this process's defaults.
      this.#settled.add(id);
      return;
    }
    const now = this.#deps.clock.now();
    if (
      terminal &&
      now - Date.parse(manifest.finishedAt ?? manifest.updatedAt) > this.#options.maxAgeMs
    ) {
      // Ended long before this process could tell anyone (notifications configured since, or
      // its records written by an earlier process): nothing to send, nothing worth writing.
      this.#settled.add(id);
      return;
    }
    const recorded = await this.#records.recorded(id, signal);
    const due = dueEvents(manifest, subscriptions, recorded, now, this.#options.maxAgeMs);
    let cost: CostReport | undefined;
    for (const event of due) {
      const log = this.#deps.logger.child({ operationId: id, event: event.event });
      if (event.stale) {
        await this.#records.skip(
          id,
          event.event,
          "reached before it could be sent in time",
          signal,
        );
        log.info({ at: event.at }, "notification skipped: the event is too old");
        continue;
      }
      if (
        TERMINAL_STATUSES.has(manifest.status) &&
        event.event !== "accepted" &&
        event.event !== "started"
      ) {
        cost = await this.#deps.store.getJson(keys.cost(id), costReportSchema, signal);
        // The scheduler writes the cost report just after the final status: worth a short wait.
        if (!cost && now - Date.parse(event.at) < this.#options.costWaitMs) return;
      }
      const claimedAt = await this.#records.claim(id, event.event, signal);
      if (!claimedAt) continue; // someone else sends it
      const deliveries = await this.#deliver(manifest, event, cost, signal);
      await this.#records.finish(id, event.event, claimedAt, deliveries, signal);
      for (const d of deliveries) {
        if (d.ok) log.info({ channel: d.channel, target: d.target }, "notification sent");
        else {
          log.warn(
            { channel: d.channel, target: d.target, attempts: d.attempts, error: d.error },
            "notification not delivered",
          );
        }
      }
    }
    if (terminal) this.#settled.add(id);
  }

  async #deliver(
    manifest: Manifest,
    due: DueEvent,
    cost: CostReport | undefined,
    signal: AbortSignal,
  ): Promise<Delivery[]> {
    const out: Delivery[] = [];
    const at = () => new Date(this.#deps.clock.now()).toISOString();
    const payload = (deliveryId: string) =>
      webhookPayload({
        event: due.event,
        deliveryId,
        sentAt: at(),
        manifest,
        cost,
        linkBase: this.#options.linkBase,
      });
    const record = (
      channel: Delivery["channel"],
      source: Delivery["source"],
      target: string,
      outcome: DeliveryOutcome,
    ) =>
      out.push({
        channel,
        source,
        target,
        ok: outcome.ok,
        attempts: outcome.attempts,
        ...(outcome.ok ? {} : { error: outcome.error }),
        at: at(),
      });
    const newId = this.#deps.newId ?? randomUUID;
    for (const sub of due.to) {
      if (sub.webhook) {
        const target = originOf(sub.webhook);
        const outcome: DeliveryOutcome = this.#deps.webhook
          ? await this.#deps.webhook.send(sub.webhook, payload(newId()), signal)
          : {
              ok: false,
              attempts: 0,
              error: "webhooks are off on this deployment (SHARDFLEET_NOTIFY_SECRET unset)",
            };
        record("webhook", sub.source, target, outcome);
      }
      if (sub.email) {
        const content = emailContent(payload(newId()));
        const outcome: DeliveryOutcome = this.#deps.email
          ? await this.#deps.email.send({ to: sub.email, ...content }, signal)
          : {
              ok: false,
              attempts: 0,
              error: "email is off on this deployment (SHARDFLEET_EMAIL_TRANSPORT=none)",
            };
        record("email", sub.source, sub.email.join(", "), outcome);
      }
    }
    return out;
  }
}
