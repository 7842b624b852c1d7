/**
 * The notifier against a real local S3 server, a webhook receiver and an SMTP server: manifests
 * are written the way the scheduler writes them; the notifier must tell each subscriber each
 * event once, survive failed deliveries, and never touch the manifest.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type LocalAws, startLocalAws } from "../../../test/support/local-aws.ts";
import { testManifest } from "../../../test/support/manifests.ts";
import {
  type SmtpReceiver,
  startSmtpReceiver,
  startWebhookReceiver,
  type WebhookReceiver,
} from "../../../test/support/notify-receivers.ts";
import { seedManifest } from "../../../test/support/seed-manifest.ts";
import type { Clock } from "../../shared/clock.ts";
import { parseEgressAllow } from "../../shared/egress.ts";
import { keys } from "../../shared/keys.ts";
import { silentLogger } from "../../shared/logger.ts";
import { type NotifySpec, notificationRecordSchema } from "../../shared/schemas/notify.ts";
import type { Manifest } from "../../shared/schemas/operation.ts";
import { loadManifest } from "../operations.ts";
import { SmtpEmailSender } from "./email.ts";
import type { WebhookPayload } from "./message.ts";
import { Notifier, type NotifierOptions } from "./notifier.ts";
import { SIGNATURE_HEADER, signBody, WebhookSender } from "./webhook.ts";

const SECRET = "integration-secret-0123456789";
const clock: Clock = { now: () => Date.now(), sleep: async () => {} };

let aws: LocalAws;
let hook: WebhookReceiver;
let smtp: SmtpReceiver;
beforeAll(async () => {
  [aws, hook, smtp] = await Promise.all([
    startLocalAws("notify-integ"),
    startWebhookReceiver(),
    startSmtpReceiver(),
  ]);
});
afterAll(async () => {
  await Promise.all([aws?.close(), hook?.close(), smtp?.close()]);
});

const made: Notifier[] = [];
afterEach(async () => {
  for (const n of made.splice(0)) await n.stop();
});

function notifier(options: NotifierOptions = {}, channels = { webhook: true, email: true }) {
  const n = new Notifier(
    {
      store: aws.store,
      clock,
      logger: silentLogger(),
      ...(channels.webhook
        ? {
            webhook: new WebhookSender(
              { clock },
              { secret: SECRET, egress: parseEgressAllow("127.0.0.1"), attempts: 2 },
            ),
          }
        : {}),
      ...(channels.email
        ? {
            email: new SmtpEmailSender(
              { clock },
              { url: smtp.url, from: "shardfleet@example.test", attempts: 2 },
            ),
          }
        : {}),
    },
    { linkBase: "https://shardfleet.example.test/", costWaitMs: 0, ...options },
  );
  made.push(n);
  return n;
}

let ids = 0;
async function operation(
  status: Manifest["status"],
  notify: NotifySpec | undefined,
  extra: Partial<Manifest> = {},
): Promise<Manifest> {
  const id = `op-notify-${++ids}-${Date.now().toString(36)}`;
  const now = new Date().toISOString();
  const base = testManifest(id, { status, ...extra });
  const manifest: Manifest = {
    ...base,
    spec: { ...base.spec, name: `job ${ids}`, ...(notify ? { notify } : {}) },
    rows: 10,
    shards: [{ id: "s000000", start: 0, end: 10 }],
    startedAt: now,
    ...(status === "succeeded" || status === "failed"
      ? {
          finishedAt: now,
          result: {
            key: keys.result(id),
            rows: 10,
            errorRows: status === "failed" ? 7 : 0,
            columns: [],
          },
        }
      : {}),
    ...(status === "failed"
      ? { error: { code: "TASK_FAILED", message: "7 of 10 rows failed" } }
      : {}),
    ...extra,
  };
  return seedManifest({ store: aws.store, clock }, manifest);
}

const bodies = (from: number) =>
  hook.requests.slice(from).map((r) => JSON.parse(r.body) as WebhookPayload);

describe("notifier (local S3, webhook receiver, SMTP server)", () => {
  it("tells a succeeded and a failed operation's subscribers, by webhook and email, once", async () => {
    const hooks = hook.requests.length;
    const mails = smtp.messages.length;
    const ok = await operation("succeeded", {
      webhook: `${hook.url}/ok`,
      email: ["ops@example.test"],
    });
    const bad = await operation("failed", {
      webhook: `${hook.url}/bad`,
      email: ["finance@example.test"],
      on: ["failed"],
    });
    const n = notifier();
    await n.tick();
    await n.tick(); // nothing new: every event is recorded
    await notifier().tick(); // nor for another scheduler process

    const got = bodies(hooks);
    expect(got.map((b) => `${b.operation.id} ${b.event}`).sort()).toEqual(
      [`${ok.id} accepted`, `${ok.id} started`, `${ok.id} succeeded`, `${bad.id} failed`].sort(),
    );
    for (const [i, req] of hook.requests.slice(hooks).entries()) {
      expect(req.headers[SIGNATURE_HEADER]).toBe(signBody(SECRET, req.body));
      expect(req.headers["x-shardfleet-delivery"]).toBe(got[i]!.deliveryId);
    }
    const failed = got.find((b) => b.event === "failed")!;
    expect(failed.operation).toMatchObject({
      id: bad.id,
      status: "failed",
      rows: { total: 10, done: 10, failed: 7 },
      error: { code: "TASK_FAILED" },
    });
    expect(failed.link).toBe(`https://shardfleet.example.test/#/operations/${bad.id}`);
    expect(failed.apiLink).toBe(`https://shardfleet.example.test/operations/${bad.id}`);
    expect(failed.text).toBe(
      `shardfleet: operation "job 2" (${bad.id}) failed; 10 rows, 7 failed; error TASK_FAILED: 7 of 10 rows failed ${failed.link}`,
    );
    const succeeded = got.find((b) => b.event === "succeeded")!;
    expect(succeeded.text).toContain(`(${ok.id}) succeeded; 10 rows, 0 failed`);

    const mail = await smtp.waitFor(mails + 4);
    const newMail = mail.slice(mails);
    expect(newMail.map((m) => `${m.to.join(",")} ${m.subject}`).sort()).toEqual(
      [
        "finance@example.test [shardfleet] job 2 failed",
        "ops@example.test [shardfleet] job 1 succeeded",
        "ops@example.test [shardfleet] job 1 started",
        "ops@example.test [shardfleet] job 1 was accepted",
      ].sort(),
    );
    expect(newMail.find((m) => m.subject.endsWith("failed"))!.text).toContain(
      "error: TASK_FAILED: 7 of 10 rows failed",
    );
  });

  it("two notifiers at once send each event once (the record is created If-None-Match)", async () => {
    const hooks = hook.requests.length;
    const op = await operation("succeeded", { webhook: `${hook.url}/race`, on: ["succeeded"] });
    await Promise.all([notifier().tick(), notifier().tick(), notifier().tick()]);
    expect(bodies(hooks).filter((b) => b.operation.id === op.id)).toHaveLength(1);
  });

  it("a failed delivery is recorded and logged; the operation and the other channel go on", async () => {
    const mails = smtp.messages.length;
    const op = await operation("failed", {
      webhook: `${hook.url}/broken`,
      email: ["ops@example.test"],
      on: ["failed"],
    });
    hook.answers.push(500, 500);
    const n = notifier();
    await n.tick();
    const record = await aws.store.getJson(
      keys.notification(op.id, "failed"),
      notificationRecordSchema,
    );
    expect(record).toMatchObject({ state: "sent", event: "failed" });
    expect(record!.deliveries).toEqual([
      expect.objectContaining({
        channel: "webhook",
        source: "spec",
        target: hook.url,
        ok: false,
        attempts: 2,
        error: expect.stringMatching(/HTTP 500 \(gave up after 2 attempts\)/),
      }),
      expect.objectContaining({ channel: "email", target: "ops@example.test", ok: true }),
    ]);
    await smtp.waitFor(mails + 1);
    const after = await loadManifest(aws.store, op.id);
    expect(after).toEqual(op);
  });

  it("deployment defaults reach every operation; events too old when first seen are skipped", async () => {
    const hooks = hook.requests.length;
    const longAgo = new Date(Date.now() - 3 * 86_400_000).toISOString();
    const old = await operation("succeeded", undefined, {
      createdAt: longAgo,
      startedAt: longAgo,
      finishedAt: longAgo,
    });
    const fresh = await operation("running", undefined);
    const n = notifier({ defaults: { webhook: `${hook.url}/ops`, on: ["accepted", "succeeded"] } });
    await n.tick();
    const got = bodies(hooks).filter(
      (b) => b.operation.id === old.id || b.operation.id === fresh.id,
    );
    expect(got.map((b) => `${b.operation.id} ${b.event}`)).toEqual([`${fresh.id} accepted`]);
    // Ended long ago: settled without a write.
    expect(await aws.store.list(keys.notificationsPrefix(old.id))).toEqual([]);
    // Still running, but started long ago: that event is recorded as skipped, not sent late.
    const late = await operation("running", undefined, { startedAt: longAgo });
    const lateHooks = hook.requests.length;
    await notifier({ defaults: { webhook: `${hook.url}/ops`, on: ["started"] } }).tick();
    expect(bodies(lateHooks).filter((b) => b.operation.id === late.id)).toEqual([]);
    const skipped = await aws.store.getJson(
      keys.notification(late.id, "started"),
      notificationRecordSchema,
    );
    expect(skipped).toMatchObject({ state: "skipped", deliveries: [] });
  });

  it("a channel the deployment has off is recorded as not delivered, never thrown", async () => {
    const op = await operation("succeeded", { webhook: `${hook.url}/off`, on: ["succeeded"] });
    await notifier({}, { webhook: false, email: false }).tick();
    const record = await aws.store.getJson(
      keys.notification(op.id, "succeeded"),
      notificationRecordSchema,
    );
    expect(record!.deliveries).toEqual([
      expect.objectContaining({
        ok: false,
        attempts: 0,
        error: expect.stringMatching(/webhooks are off/),
      }),
    ]);
  });
});
