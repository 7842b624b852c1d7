/**
 * Notifications: the spec's `notify` field (who is told, on which events) and the per-event
 * notification record (`operations/{op}/notifications/{event}.json`), which says what was sent.
 */
import { z } from "zod";

/** What an operation can tell people about, in the order they happen. */
export const NOTIFY_EVENTS = [
  "accepted",
  "started",
  "succeeded",
  "succeeded-with-failures",
  "failed",
  "cancelled",
] as const;
export type NotifyEvent = (typeof NOTIFY_EVENTS)[number];

/** At most this many addresses per spec: a notification is not a mailing list. */
export const MAX_NOTIFY_EMAILS = 20;

/** The spec's `notify` field. Strict: a misspelt key is refused, not ignored. */
export const notifySpecSchema = z.strictObject({
  /** Receives a signed JSON POST per event (http or https; checked by the egress policy). */
  webhook: z
    .url({ protocol: /^https?$/, error: "must be an http or https URL" })
    .max(2048)
    .optional(),
  /** Receive an email per event. */
  email: z.array(z.email().max(254)).min(1).max(MAX_NOTIFY_EMAILS).optional(),
  /** Events to send. @default every event */
  on: z.array(z.enum(NOTIFY_EVENTS)).min(1).optional(),
});
export type NotifySpec = z.infer<typeof notifySpecSchema>;

export const notifyChannelSchema = z.enum(["webhook", "email"]);
export type NotifyChannel = z.infer<typeof notifyChannelSchema>;

/** One channel's delivery of one event. */
export const deliverySchema = z.object({
  channel: notifyChannelSchema,
  /** Whose subscription: the operation's spec, or the deployment's defaults. */
  source: z.enum(["spec", "deployment"]),
  /** Where it went: the webhook's origin or the email addresses (never a query string). */
  target: z.string(),
  ok: z.boolean(),
  attempts: z.number().int().nonnegative(),
  /** Why it failed (absent when ok). */
  error: z.string().optional(),
  at: z.iso.datetime(),
});
export type Delivery = z.infer<typeof deliverySchema>;

/**
 * The record of one event of one operation. Created with If-None-Match: * before anything is
 * sent (so an event is sent at most once, by whoever created it), then rewritten by that same
 * sender with the outcomes. `skipped` says why nothing was sent (too old when first seen).
 */
export const notificationRecordSchema = z.object({
  v: z.literal(1),
  operationId: z.string(),
  event: z.enum(NOTIFY_EVENTS),
  claimedAt: z.iso.datetime(),
  state: z.enum(["sending", "sent", "skipped"]),
  skipped: z.string().optional(),
  deliveries: z.array(deliverySchema),
});
export type NotificationRecord = z.infer<typeof notificationRecordSchema>;
