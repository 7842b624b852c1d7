/**
 * Webhook delivery against a real HTTP receiver on loopback: signature, retries, refusals.
 * Sleeps are recorded, not waited (the backoff is checked by what it asked for).
 */
import { createHmac } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  startWebhookReceiver,
  type WebhookReceiver,
} from "../../../test/support/notify-receivers.ts";
import type { Clock } from "../../shared/clock.ts";
import { PUBLIC_ONLY, parseEgressAllow } from "../../shared/egress.ts";
import { SIGNATURE_HEADER, signBody, WebhookSender } from "./webhook.ts";

const SECRET = "a-test-secret-of-some-length";

function recordingClock(): Clock & { slept: number[] } {
  const slept: number[] = [];
  return { slept, now: () => Date.now(), sleep: async (ms) => void slept.push(ms) };
}

let receiver: WebhookReceiver;
beforeAll(async () => {
  receiver = await startWebhookReceiver();
});
afterAll(async () => {
  await receiver?.close();
});

function sender(clock: Clock, egress = parseEgressAllow("127.0.0.1")) {
  return new WebhookSender({ clock, random: () => 1 }, { secret: SECRET, egress, attempts: 4 });
}

describe("webhook sender", () => {
  it("POSTs the JSON body with an HMAC-SHA256 signature a receiver can recompute", async () => {
    const clock = recordingClock();
    const s = sender(clock);
    const before = receiver.requests.length;
    const outcome = await s.send(`${receiver.url}/hook`, {
      event: "succeeded",
      deliveryId: "d-1",
      text: "hello",
    } as never);
    await s.close();
    expect(outcome).toEqual({ ok: true, attempts: 1 });
    const req = receiver.requests[before]!;
    expect(req.path).toBe("/hook");
    expect(JSON.parse(req.body)).toEqual({ event: "succeeded", deliveryId: "d-1", text: "hello" });
    const expected = `sha256=${createHmac("sha256", SECRET).update(req.body).digest("hex")}`;
    expect(req.headers[SIGNATURE_HEADER]).toBe(expected);
    expect(signBody(SECRET, req.body)).toBe(expected);
    expect(req.headers["x-shardfleet-event"]).toBe("succeeded");
    expect(req.headers["x-shardfleet-delivery"]).toBe("d-1");
    expect(clock.slept).toEqual([]);
  });

  it("retries 503 and 429 with doubling backoff, then succeeds", async () => {
    const clock = recordingClock();
    const s = sender(clock);
    const before = receiver.requests.length;
    receiver.answers.push(503, 429);
    const outcome = await s.send(`${receiver.url}/retry`, { event: "failed", deliveryId: "d-2" });
    await s.close();
    expect(outcome).toEqual({ ok: true, attempts: 3 });
    expect(receiver.requests.length - before).toBe(3);
    expect(clock.slept).toEqual([500, 1000]);
  });

  it("gives up on a 4xx at once, and after its attempts on 5xx, as a value", async () => {
    const clock = recordingClock();
    const s = sender(clock);
    receiver.answers.push(404);
    expect(await s.send(`${receiver.url}/gone`, { event: "failed", deliveryId: "d-3" })).toEqual({
      ok: false,
      attempts: 1,
      error: "webhook answered HTTP 404",
    });
    receiver.answers.push(500, 500, 500, 500);
    const out = await s.send(`${receiver.url}/down`, { event: "failed", deliveryId: "d-4" });
    await s.close();
    expect(out).toMatchObject({ ok: false, attempts: 4 });
    expect(out.ok ? "" : out.error).toMatch(/HTTP 500 \(gave up after 4 attempts\)/);
  });

  it("refuses to connect where the egress policy does not allow, without retrying", async () => {
    const clock = recordingClock();
    const s = sender(clock, PUBLIC_ONLY);
    const before = receiver.requests.length;
    const out = await s.send(`${receiver.url}/private`, { event: "failed", deliveryId: "d-5" });
    await s.close();
    expect(out).toMatchObject({ ok: false, attempts: 1 });
    expect(out.ok ? "" : out.error).toMatch(/egress refused: 127\.0\.0\.1:\d+ is a loopback/);
    expect(receiver.requests.length).toBe(before);
  });

  it("a host name resolving to a refused address is refused on the address (DNS rebinding)", async () => {
    const clock = recordingClock();
    const s = new WebhookSender(
      { clock, lookup: async () => [{ address: "169.254.169.254" }] },
      { secret: SECRET, egress: parseEgressAllow("127.0.0.1") },
    );
    const out = await s.send("http://hooks.example.test/x", { event: "failed", deliveryId: "d-6" });
    await s.close();
    expect(out.ok ? "" : out.error).toMatch(/169\.254\.169\.254:80 is .*metadata/);
  });
});
