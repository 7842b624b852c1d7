/**
 * The notifier and its senders from the SHARDFLEET_NOTIFY_* / SHARDFLEET_EMAIL_* settings.
 * Always built: an operation's own `notify` needs no deployment defaults, only the channels.
 */
import { SESv2Client } from "@aws-sdk/client-sesv2";
import { requestHandlerOptions } from "../../shared/aws.ts";
import type { Clock } from "../../shared/clock.ts";
import type { Config } from "../../shared/config.ts";
import type { Logger } from "../../shared/logger.ts";
import type { ObjectStore } from "../../shared/object-store.ts";
import { type EmailSender, SesEmailSender, SmtpEmailSender } from "./email.ts";
import { Notifier } from "./notifier.ts";
import type { NotifyChannels } from "./spec-check.ts";
import { WebhookSender } from "./webhook.ts";

/** The channels the intake lets a spec use. */
export function notifyChannels(config: Config): NotifyChannels {
  return {
    webhook: config.notify.secret !== undefined,
    email: config.notify.email.kind !== "none",
  };
}

function emailSender(config: Config, clock: Clock): EmailSender | undefined {
  const email = config.notify.email;
  switch (email.kind) {
    case "none":
      return undefined;
    case "smtp":
      return new SmtpEmailSender({ clock }, { url: email.url, from: email.from });
    case "ses":
      // Region and credentials from the standard AWS chain (the instance role in AWS).
      return new SesEmailSender(
        { clock, ses: new SESv2Client({ requestHandler: requestHandlerOptions(config.aws) }) },
        { from: email.from },
      );
  }
}

export function notifierFromConfig(
  config: Config,
  deps: { store: ObjectStore; logger: Logger; clock: Clock },
): Notifier {
  const { notify } = config;
  const email = emailSender(config, deps.clock);
  const webhook =
    notify.secret !== undefined
      ? new WebhookSender({ clock: deps.clock }, { secret: notify.secret, egress: config.egress })
      : undefined;
  const defaults = notify.defaults;
  return new Notifier(
    {
      store: deps.store,
      clock: deps.clock,
      logger: deps.logger.child({ component: "notifier" }),
      ...(webhook ? { webhook } : {}),
      ...(email ? { email } : {}),
    },
    {
      defaults: {
        ...(defaults.webhook ? { webhook: defaults.webhook } : {}),
        email: defaults.email,
        ...(defaults.on ? { on: defaults.on } : {}),
      },
      ...(notify.publicUrl ? { linkBase: notify.publicUrl } : {}),
      intervalMs: Math.round(notify.intervalSeconds * 1000),
    },
  );
}
