/**
 * Local peers for notification tests: a webhook receiver (HTTP on loopback, answers what the
 * test says, records every request) and an SMTP server (smtp-server, messages parsed with
 * mailparser). Both wait for events instead of sleeping.
 */
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { simpleParser } from "mailparser";
import { SMTPServer } from "smtp-server";

export interface ReceivedRequest {
  path: string;
  headers: IncomingMessage["headers"];
  body: string;
}

export interface WebhookReceiver {
  url: string;
  requests: ReceivedRequest[];
  /** Statuses to answer, in order; 200 once used up. */
  answers: number[];
  /** Resolves once `count` requests in all have arrived. */
  waitFor(count: number, timeoutMs?: number): Promise<ReceivedRequest[]>;
  close(): Promise<void>;
}

function waiter<T>(items: T[], signal: { on(cb: () => void): void }) {
  return (count: number, timeoutMs = 20_000) =>
    new Promise<T[]>((resolve, reject) => {
      if (items.length >= count) return resolve(items.slice());
      const timer = setTimeout(
        () => reject(new Error(`timed out waiting for ${count} (have ${items.length})`)),
        timeoutMs,
      );
      signal.on(() => {
        if (items.length >= count) {
          clearTimeout(timer);
          resolve(items.slice());
        }
      });
    });
}

function listeners() {
  const cbs: Array<() => void> = [];
  return {
    on(cb: () => void) {
      cbs.push(cb);
    },
    fire() {
      for (const cb of cbs) cb();
    },
  };
}

export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const requests: ReceivedRequest[] = [];
  const answers: number[] = [];
  const arrived = listeners();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      requests.push({
        path: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
      });
      res.statusCode = answers.shift() ?? 200;
      res.end("ok");
      arrived.fire();
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    answers,
    waitFor: waiter(requests, arrived),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface ReceivedMail {
  from: string;
  to: string[];
  subject: string;
  text: string;
}

export interface SmtpReceiver {
  port: number;
  url: string;
  messages: ReceivedMail[];
  /** SMTP reply codes to refuse the next messages with (e.g. 451, 550); accepted once used up. */
  refusals: number[];
  waitFor(count: number, timeoutMs?: number): Promise<ReceivedMail[]>;
  close(): Promise<void>;
}

export async function startSmtpReceiver(): Promise<SmtpReceiver> {
  const messages: ReceivedMail[] = [];
  const refusals: number[] = [];
  const arrived = listeners();
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS"],
    logger: false,
    onData(stream, session, callback) {
      simpleParser(stream)
        .then((mail) => {
          const code = refusals.shift();
          if (code !== undefined) {
            callback(Object.assign(new Error(`refused with ${code}`), { responseCode: code }));
            return;
          }
          messages.push({
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
            to: session.envelope.rcptTo.map((r) => r.address),
            subject: mail.subject ?? "",
            text: mail.text ?? "",
          });
          callback();
          arrived.fire();
        })
        .catch((err: Error) => callback(err));
    },
  });
  server.listen(0, "127.0.0.1");
  await once(server.server, "listening");
  const { port } = server.server.address() as AddressInfo;
  return {
    port,
    url: `smtp://127.0.0.1:${port}`,
    messages,
    refusals,
    waitFor: waiter(messages, arrived),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
