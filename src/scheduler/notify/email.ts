/**
 * Email delivery behind one small port, with two adapters chosen by configuration
 * (SHARDFLEET_EMAIL_TRANSPORT): SMTP through nodemailer, and Amazon SES through the AWS SDK's
 * SESv2 client. Both retry transient failures (SMTP 4xx replies and connection faults; SES
 * throttling and 5xx) and give up at once on a permanent refusal.
 */
import { type SESv2Client, SendEmailCommand } from "@aws-sdk/client-sesv2";
import nodemailer, { type Transporter } from "nodemailer";
import type { Clock } from "../../shared/clock.ts";
import { describeError } from "../../shared/errors.ts";
import { isTransientError } from "../../shared/transient.ts";
import { type DeliveryOutcome, type RetryOptions, type TryOutcome, withRetries } from "./retry.ts";

export interface EmailMessage {
  to: readonly string[];
  subject: string;
  text: string;
}

/** Sends one email to its recipients. */
export interface EmailSender {
  /** Which adapter (for logs and the notification record). */
  readonly kind: "smtp" | "ses";
  /** Sends, retrying what may work later; never throws for a delivery failure. */
  send(message: EmailMessage, signal?: AbortSignal): Promise<DeliveryOutcome>;
  close(): Promise<void>;
}

export interface EmailSenderDeps {
  clock: Clock;
  random?: () => number;
}

export interface SmtpOptions extends RetryOptions {
  /** `smtp://user:pass@host:587` or `smtps://…` (nodemailer's connection URL). */
  url: string;
  /** The From address. */
  from: string;
}

/** SMTP through nodemailer (one pooled transport per process). */
export class SmtpEmailSender implements EmailSender {
  readonly kind = "smtp" as const;
  readonly #deps: EmailSenderDeps;
  readonly #options: SmtpOptions;
  readonly #transport: Transporter;

  constructor(deps: EmailSenderDeps, options: SmtpOptions) {
    this.#deps = deps;
    this.#options = options;
    this.#transport = nodemailer.createTransport(options.url);
  }

  send(message: EmailMessage, signal?: AbortSignal): Promise<DeliveryOutcome> {
    return withRetries(
      this.#deps,
      async (): Promise<TryOutcome> => {
        try {
          await this.#transport.sendMail({
            from: this.#options.from,
            to: [...message.to],
            subject: message.subject,
            text: message.text,
          });
          return { kind: "ok" };
        } catch (err) {
          const code = (err as { responseCode?: number }).responseCode;
          const error = `SMTP: ${describeError(err)}`;
          // 5xx replies are the server's final word (unknown mailbox, refused sender).
          return code !== undefined && code >= 500
            ? { kind: "permanent", error }
            : { kind: "retry", error };
        }
      },
      this.#options,
      signal,
    );
  }

  async close(): Promise<void> {
    this.#transport.close();
  }
}

export interface SesOptions extends RetryOptions {
  /** A verified SES identity (SHARDFLEET_EMAIL_FROM). */
  from: string;
  /** An SES configuration set for delivery events. @default none */
  configurationSet?: string;
}

/** Amazon SES (SendEmail, v2 API). */
export class SesEmailSender implements EmailSender {
  readonly kind = "ses" as const;
  readonly #deps: EmailSenderDeps & { ses: SESv2Client };
  readonly #options: SesOptions;

  constructor(deps: EmailSenderDeps & { ses: SESv2Client }, options: SesOptions) {
    this.#deps = deps;
    this.#options = options;
  }

  send(message: EmailMessage, signal?: AbortSignal): Promise<DeliveryOutcome> {
    const command = new SendEmailCommand({
      FromEmailAddress: this.#options.from,
      Destination: { ToAddresses: [...message.to] },
      Content: {
        Simple: {
          Subject: { Data: message.subject, Charset: "UTF-8" },
          Body: { Text: { Data: message.text, Charset: "UTF-8" } },
        },
      },
      ...(this.#options.configurationSet
        ? { ConfigurationSetName: this.#options.configurationSet }
        : {}),
    });
    return withRetries(
      this.#deps,
      async (): Promise<TryOutcome> => {
        try {
          await this.#deps.ses.send(command, signal ? { abortSignal: signal } : {});
          return { kind: "ok" };
        } catch (err) {
          if (signal?.aborted) throw err;
          const error = `SES: ${describeError(err)}`;
          return isTransientError(err) ? { kind: "retry", error } : { kind: "permanent", error };
        }
      },
      this.#options,
      signal,
    );
  }

  async close(): Promise<void> {
    this.#deps.ses.destroy();
  }
}
