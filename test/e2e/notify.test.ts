/**
 * Watching an operation, end to end on the local stack: a webhook receiver and an SMTP server
 * in the test get the expected messages for a succeeded and a failed operation, and `/metrics`
 * scraped afterwards counts what the operations themselves say.
 */
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitForOperation } from "../../src/cli/wait.ts";
import type { WebhookPayload } from "../../src/scheduler/notify/message.ts";
import { SIGNATURE_HEADER, signBody } from "../../src/scheduler/notify/webhook.ts";
import { startTestStack, type TestStack } from "../support/local-stack.ts";
import {
  type SmtpReceiver,
  startSmtpReceiver,
  startWebhookReceiver,
  type WebhookReceiver,
} from "../support/notify-receivers.ts";
import { writeNumbersCsv } from "../support/plugins.ts";

const SECRET = "e2e-notify-secret-0123456789";
const ROWS = 400;

describe("notifications end to end (local stack, webhook receiver, SMTP server)", () => {
  let env: TestStack;
  let hook: WebhookReceiver;
  let smtp: SmtpReceiver;

  beforeAll(async () => {
    [hook, smtp] = await Promise.all([startWebhookReceiver(), startSmtpReceiver()]);
    env = await startTestStack("notify", {
      workers: 2,
      plugins: {
        // Odd rows fail when asked to: 50% of the rows, over any tolerance below it.
        "picky.mjs": `export const columns = ["double"];
export default function (row) {
  if (row.fail === "odd" && row.n % 2 === 1) throw new Error("odd row refused");
  return { double: row.n * 2 };
}
`,
      },
      settings: {
        SHARDFLEET_NOTIFY_SECRET: SECRET,
        SHARDFLEET_NOTIFY_INTERVAL_S: "0.2",
        SHARDFLEET_EMAIL_TRANSPORT: "smtp",
        SHARDFLEET_SMTP_URL: smtp.url,
        SHARDFLEET_EMAIL_FROM: "shardfleet@example.test",
        SHARDFLEET_PUBLIC_URL: "https://shardfleet.example.test",
      },
      egressAllow: [new URL(hook.url).host],
    });
  }, 60_000);

  afterAll(async () => {
    await env?.close();
    await Promise.all([hook?.close(), smtp?.close()]);
  }, 60_000);

  async function run(name: string, fail: "none" | "odd") {
    const input = path.join(env.dir, `${name}.csv`);
    await writeNumbersCsv(input, ROWS);
    // The plugin reads `fail` from each row: add it as a constant column.
    const lines = (await readFile(input, "utf8")).trimEnd().split("\n");
    await writeFile(
      input,
      `${lines.map((l, i) => (i === 0 ? `${l},fail` : `${l},${fail}`)).join("\n")}\n`,
    );
    const { id } = await env.client.submit(input, {
      name,
      task: { name: "transform", options: { module: "picky" } },
      shardSize: 100,
      toleratedFailurePercent: 10,
      notify: {
        webhook: `${hook.url}/hooks/${name}`,
        email: [`${name}@example.test`],
        on: ["accepted", "started", "succeeded", "failed"],
      },
    });
    const view = await waitForOperation(env.client, id, { progress: false, intervalMs: 200 });
    return { id, view, client: env.client };
  }

  it("sends accepted, started and the outcome, signed and by email, for a succeeded and a failed operation; /metrics counts match them", async () => {
    const { stack } = env;
    const ok = await run("good", "none");
    expect(ok.view.status).toBe("succeeded");
    const bad = await run("bad", "odd");
    expect(bad.view.status).toBe("failed");
    expect(bad.view.rows.failed).toBe(ROWS / 2);

    const requests = await hook.waitFor(6, 30_000);
    const bodies = requests.map((r) => JSON.parse(r.body) as WebhookPayload);
    for (const r of requests) expect(r.headers[SIGNATURE_HEADER]).toBe(signBody(SECRET, r.body));
    const events = (id: string) => bodies.filter((b) => b.operation.id === id).map((b) => b.event);
    expect(events(ok.id)).toEqual(["accepted", "started", "succeeded"]);
    expect(events(bad.id)).toEqual(["accepted", "started", "failed"]);

    const succeeded = bodies.find((b) => b.event === "succeeded")!;
    expect(succeeded.operation).toMatchObject({
      id: ok.id,
      name: "good",
      status: "succeeded",
      rows: { total: ROWS, done: ROWS, failed: 0 },
    });
    expect(succeeded.link).toBe(`https://shardfleet.example.test/#/operations/${ok.id}`);
    expect(succeeded.apiLink).toBe(`https://shardfleet.example.test/operations/${ok.id}`);
    // The scheduler writes the cost report just after the final status: the message has it.
    expect(succeeded.cost).not.toBeNull();
    expect(succeeded.text).toMatch(/succeeded; 400 rows, 0 failed; cost \$/);
    const failed = bodies.find((b) => b.event === "failed")!;
    expect(failed.operation).toMatchObject({
      status: "failed",
      rows: { total: ROWS, done: ROWS, failed: ROWS / 2 },
      error: { code: "TASK_FAILED" },
    });
    expect(failed.text).toContain("error TASK_FAILED: 200 of 400 rows failed");

    const mails = await smtp.waitFor(6, 30_000);
    const subjects = (to: string) => mails.filter((m) => m.to.includes(to)).map((m) => m.subject);
    expect(subjects("good@example.test")).toEqual([
      "[shardfleet] good was accepted",
      "[shardfleet] good started",
      "[shardfleet] good succeeded",
    ]);
    expect(subjects("bad@example.test")).toEqual([
      "[shardfleet] bad was accepted",
      "[shardfleet] bad started",
      "[shardfleet] bad failed",
    ]);

    // What was sent is kept per event, failures would show here too.
    const res = await fetch(`${stack.apiUrl}/operations/${bad.id}/notifications`);
    const { notifications } = (await res.json()) as {
      notifications: Array<{ event: string; deliveries: Array<{ channel: string; ok: boolean }> }>;
    };
    expect(
      notifications.map((n) => [n.event, n.deliveries.map((d) => `${d.channel}:${d.ok}`)]),
    ).toEqual([
      ["accepted", ["webhook:true", "email:true"]],
      ["started", ["webhook:true", "email:true"]],
      ["failed", ["webhook:true", "email:true"]],
    ]);

    // Prometheus scrape: the counters match the operations' own counts.
    const scrape = await fetch(`${stack.apiUrl}/metrics`);
    expect(scrape.status).toBe(200);
    expect(scrape.headers.get("content-type")).toMatch(/^text\/plain/);
    const text = await scrape.text();
    const value = (series: string) => {
      const line = text.split("\n").find((l) => l.startsWith(`${series} `));
      return line === undefined ? undefined : Number(line.slice(series.length + 1));
    };
    for (const op of [ok, bad]) {
      const rows = op.view.rows;
      const labels = (outcome: string) =>
        `shardfleet_operation_rows{operation="${op.id}",tenant="default",outcome="${outcome}"}`;
      expect(value(labels("done"))).toBe(rows.done);
      expect(value(labels("failed"))).toBe(rows.failed);
      expect(value(labels("total"))).toBe(rows.total);
    }
    expect(value('shardfleet_rows_total{outcome="done"}')).toBe(
      ok.view.rows.done + bad.view.rows.done,
    );
    expect(value('shardfleet_rows_total{outcome="failed"}')).toBe(ROWS / 2);
    expect(value('shardfleet_operations{tenant="default",status="succeeded"}')).toBe(1);
    expect(value('shardfleet_operations{tenant="default",status="failed"}')).toBe(1);
    // Nothing unfinished is left: no shard of a running operation.
    expect(value('shardfleet_shards{state="pending"}')).toBe(0);
    expect(value('shardfleet_shards{state="running"}')).toBe(0);
    // The local stack's workers are static (not launched by a fleet manager): no reclaims.
    expect(value('shardfleet_reclaims_total{notice="true"}')).toBe(0);
    expect(value('shardfleet_reclaims_total{notice="false"}')).toBe(0);
    expect(value('shardfleet_queue_messages{queue="dlq",state="visible"}')).toBe(0);
    expect(text).toMatch(/^shardfleet_cost_usd_total\{tenant="default"\} [0-9.e-]+$/m);
    // Each API request was timed by its route pattern, never by its URL.
    const posted = value(
      'shardfleet_api_request_duration_seconds_count{method="POST",route="/operations",status="202"}',
    );
    expect(posted).toBe(2);
    expect(text).not.toContain(`route="/operations/${ok.id}"`);
  }, 240_000);
});
