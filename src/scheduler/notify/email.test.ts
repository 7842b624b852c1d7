/**
 * Email delivery: SMTP against a real local SMTP server (smtp-server); SES only against
 * recorded SESv2 response shapes (no AWS account here), replayed by a request handler.
 */
import { Readable } from "node:stream";
import { SESv2Client } from "@aws-sdk/client-sesv2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type SmtpReceiver, startSmtpReceiver } from "../../../test/support/notify-receivers.ts";
import type { Clock } from "../../shared/clock.ts";
import { SesEmailSender, SmtpEmailSender } from "./email.ts";

function recordingClock(): Clock & { slept: number[] } {
  const slept: number[] = [];
  return { slept, now: () => Date.now(), sleep: async (ms) => void slept.push(ms) };
}

let smtp: SmtpReceiver;
beforeAll(async () => {
  smtp = await startSmtpReceiver();
});
afterAll(async () => {
  await smtp?.close();
});

describe("SMTP email (local SMTP server)", () => {
  it("delivers subject, text and recipients", async () => {
    const sender = new SmtpEmailSender(
      { clock: recordingClock() },
      { url: smtp.url, from: "shardfleet@example.test" },
    );
    const outcome = await sender.send({
      to: ["ops@example.test", "finance@example.test"],
      subject: "[shardfleet] tax lookup succeeded",
      text: "shardfleet: operation op-1 succeeded\n",
    });
    await sender.close();
    expect(outcome).toEqual({ ok: true, attempts: 1 });
    const [mail] = await smtp.waitFor(1);
    expect(mail).toMatchObject({
      from: "shardfleet@example.test",
      to: ["ops@example.test", "finance@example.test"],
      subject: "[shardfleet] tax lookup succeeded",
    });
    expect(mail!.text).toContain("operation op-1 succeeded");
  });

  it("retries a 4xx reply, gives up at once on a 5xx reply", async () => {
    const clock = recordingClock();
    const sender = new SmtpEmailSender(
      { clock, random: () => 1 },
      { url: smtp.url, from: "shardfleet@example.test", attempts: 3 },
    );
    const before = smtp.messages.length;
    smtp.refusals.push(451);
    expect(await sender.send({ to: ["a@example.test"], subject: "s", text: "t" })).toEqual({
      ok: true,
      attempts: 2,
    });
    expect(smtp.messages.length).toBe(before + 1);
    smtp.refusals.push(550);
    const refused = await sender.send({ to: ["a@example.test"], subject: "s", text: "t" });
    await sender.close();
    expect(refused).toMatchObject({ ok: false, attempts: 1 });
    expect(clock.slept).toEqual([500]);
  });
});

/** Replays one recorded SESv2 HTTP response per call and keeps the requests. */
function recordedSes(
  responses: Array<{ status: number; headers: Record<string, string>; body: string }>,
) {
  const requests: Array<{ path: string; body: string }> = [];
  const ses = new SESv2Client({
    region: "eu-west-1",
    credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" },
    maxAttempts: 1,
    requestHandler: {
      async handle(request: { path: string; body?: unknown }) {
        const body = request.body;
        requests.push({
          path: request.path,
          body: typeof body === "string" ? body : Buffer.from(body as Uint8Array).toString("utf8"),
        });
        const next = responses.shift();
        if (!next) throw new Error("no recorded response left");
        return {
          response: {
            statusCode: next.status,
            headers: { "content-type": "application/json", ...next.headers },
            body: Readable.from([Buffer.from(next.body)]),
          },
        };
      },
    } as never,
  });
  return { ses, requests };
}

describe("SES email (recorded SESv2 response shapes, no AWS)", () => {
  it("sends SendEmail with the simple content and reads the MessageId answer", async () => {
    const { ses, requests } = recordedSes([
      {
        status: 200,
        headers: { "x-amzn-requestid": "f1b2" },
        body: JSON.stringify({ MessageId: "0102018c5e1f-example-000000" }),
      },
    ]);
    const sender = new SesEmailSender(
      { clock: recordingClock(), ses },
      { from: "shardfleet@example.test" },
    );
    const outcome = await sender.send({ to: ["ops@example.test"], subject: "subj", text: "body" });
    await sender.close();
    expect(outcome).toEqual({ ok: true, attempts: 1 });
    expect(requests[0]!.path).toBe("/v2/email/outbound-emails");
    expect(JSON.parse(requests[0]!.body)).toEqual({
      FromEmailAddress: "shardfleet@example.test",
      Destination: { ToAddresses: ["ops@example.test"] },
      Content: {
        Simple: {
          Subject: { Data: "subj", Charset: "UTF-8" },
          Body: { Text: { Data: "body", Charset: "UTF-8" } },
        },
      },
    });
  });

  it("retries throttling (TooManyRequestsException), stops at MessageRejected", async () => {
    const clock = recordingClock();
    const { ses } = recordedSes([
      {
        status: 429,
        headers: { "x-amzn-errortype": "TooManyRequestsException" },
        body: JSON.stringify({ message: "Maximum sending rate exceeded." }),
      },
      { status: 200, headers: {}, body: JSON.stringify({ MessageId: "m-2" }) },
      {
        status: 400,
        headers: { "x-amzn-errortype": "MessageRejected" },
        body: JSON.stringify({
          message: "Email address is not verified. The following identities failed the check",
        }),
      },
    ]);
    const sender = new SesEmailSender(
      { clock, ses, random: () => 1 },
      { from: "shardfleet@example.test" },
    );
    expect(await sender.send({ to: ["a@example.test"], subject: "s", text: "t" })).toEqual({
      ok: true,
      attempts: 2,
    });
    const rejected = await sender.send({ to: ["a@example.test"], subject: "s", text: "t" });
    await sender.close();
    expect(rejected).toMatchObject({ ok: false, attempts: 1 });
    expect(rejected.ok ? "" : rejected.error).toMatch(/SES: .*not verified/);
    expect(clock.slept).toEqual([500]);
  });
});
