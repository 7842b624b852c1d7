/**
 * The intake's check of a spec's `notify` beyond its schema: a channel this deployment has off
 * is refused rather than silently never used, and a webhook whose literal address the egress
 * policy refuses is refused now (a host name is checked on the address connected to, when sent).
 */
import { checkEgress, type EgressPolicy, parseAddress, urlPort } from "../../shared/egress.ts";
import { BadInputError } from "../../shared/errors.ts";
import type { NotifySpec } from "../../shared/schemas/notify.ts";

/** Which channels the deployment can send on. */
export interface NotifyChannels {
  /** A webhook HMAC secret is configured. */
  webhook: boolean;
  /** An email transport is configured. */
  email: boolean;
}

function refuse(path: string, message: string, code: "SPEC_INVALID" | "EGRESS_REFUSED") {
  return new BadInputError(code, `spec ${path}: ${message}`, { details: { path } });
}

/** Throws BadInputError (400) naming `notify.webhook` or `notify.email`. */
export function checkNotify(
  notify: NotifySpec | undefined,
  egress: EgressPolicy,
  channels: NotifyChannels,
): void {
  if (!notify) return;
  if (notify.webhook !== undefined) {
    if (!channels.webhook) {
      throw refuse(
        "notify.webhook",
        "webhooks are off on this deployment (its operator has not set SHARDFLEET_NOTIFY_SECRET)",
        "SPEC_INVALID",
      );
    }
    const url = new URL(notify.webhook);
    const host = url.hostname.replace(/^\[|\]$/g, "");
    if (parseAddress(host)) {
      const decision = checkEgress(egress, { address: host, port: urlPort(url) });
      if (!decision.ok) {
        throw refuse("notify.webhook", `egress refused: ${decision.reason}`, "EGRESS_REFUSED");
      }
    }
  }
  if (notify.email !== undefined && !channels.email) {
    throw refuse(
      "notify.email",
      "email is off on this deployment (its operator has not set SHARDFLEET_EMAIL_TRANSPORT)",
      "SPEC_INVALID",
    );
  }
}
