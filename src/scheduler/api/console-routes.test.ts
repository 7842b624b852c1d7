/**
 * The console's routes against a real local S3 (integration tier): the page and bundle open to
 * anyone under a strict CSP, everything else still behind the token; events-stream tickets; the
 * task offer; the workbook preview with the intake's reader.
 */
import type { AddressInfo } from "node:net";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FormPart, multipart, transformSpec } from "../../../test/support/api.ts";
import { type LocalAws, startLocalAws } from "../../../test/support/local-aws.ts";
import { simpleXlsx } from "../../../test/support/workbooks.ts";
import { systemClock } from "../../shared/clock.ts";
import { silentLogger } from "../../shared/logger.ts";
import { sha256Hex } from "../../shared/schemas/tokens.ts";
import { OperationService } from "../operations.ts";
import { buildApp } from "./app.ts";

const ACME = "acme-token-0123456789abcdef0123456789";
const OTHER = "other-token-0123456789abcdef012345678";
const auth = (token: string) => ({ authorization: `Bearer ${token}` });

let env: LocalAws;
let app: FastifyInstance;
let base: string;

beforeAll(async () => {
  env = await startLocalAws("console-routes");
  const logger = silentLogger();
  const operations = new OperationService({ store: env.store, logger, clock: systemClock });
  app = buildApp({
    operations,
    logger,
    maxUploadBytes: 1 << 20,
    apiTokens: [
      { tenant: "acme", role: "member", sha256: sha256Hex(ACME), line: 1, caps: {} },
      { tenant: "other", role: "member", sha256: sha256Hex(OTHER), line: 2, caps: {} },
    ],
    limits: { rateLimitPerMinute: 0, failedAuthPerMinute: 0 },
    console: { pluginDir: "plugins", notify: { webhook: true, email: false } },
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await app?.close();
  await env?.close();
});

async function submit(token: string): Promise<string> {
  const { payload, headers } = await multipart([
    {
      name: "spec",
      value: JSON.stringify(
        transformSpec({ task: { name: "transform", options: { module: "noop" } } }),
      ),
    },
    { name: "file", filename: "people.csv", type: "text/csv", data: "name,city\nada,london\n" },
  ]);
  const res = await app.inject({
    method: "POST",
    url: "/operations",
    payload,
    headers: { ...headers, ...auth(token) },
  });
  expect(res.statusCode, res.body).toBe(202);
  return res.json().id;
}

describe("the console's page and bundle", () => {
  it("are served without a token, under a CSP that allows only the origin's own scripts and styles", async () => {
    const page = await app.inject({ method: "GET", url: "/" });
    expect(page.statusCode).toBe(200);
    expect(page.headers["content-type"]).toMatch(/text\/html/);
    expect(page.body).toContain('src="/console/app.js"');
    expect(page.body).not.toMatch(/<script>|<style|style="/); // nothing inline
    const csp = String(page.headers["content-security-policy"]);
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self';");
    expect(csp).toMatch(/style-src 'self'(;|$)/);
    expect(csp).not.toContain("unsafe-inline");
    const js = await app.inject({ method: "GET", url: "/console/app.js" });
    expect(js.statusCode).toBe(200);
    expect(js.headers["content-type"]).toMatch(/javascript/);
    const css = await app.inject({ method: "GET", url: "/console/app.css" });
    expect(css.statusCode).toBe(200);
  });

  it("open nothing else: the API still wants the token", async () => {
    for (const url of ["/operations", "/whoami", "/tasks", "/console/../whoami"]) {
      const res = await app.inject({ method: "GET", url });
      expect(res.statusCode, url).toBe(401);
    }
    expect((await app.inject({ method: "GET", url: "/console/nope.js" })).statusCode).toBe(404);
  });
});

describe("events-stream tickets", () => {
  it("open the stream without a header, for that operation and tenant only", async () => {
    const id = await submit(ACME);
    const other = await submit(OTHER);
    const issued = await app.inject({
      method: "POST",
      url: `/operations/${id}/events/ticket`,
      headers: auth(ACME),
    });
    expect(issued.statusCode).toBe(200);
    const { ticket } = issued.json();
    // Another tenant cannot get a ticket for it (404, as for an unknown id)...
    const refused = await app.inject({
      method: "POST",
      url: `/operations/${id}/events/ticket`,
      headers: auth(OTHER),
    });
    expect(refused.statusCode).toBe(404);
    // ...a ticket opens its own operation's stream only...
    const wrongOp = await fetch(`${base}/operations/${other}/events?ticket=${ticket}`);
    expect(wrongOp.status).toBe(401);
    await wrongOp.body?.cancel();
    const bad = await fetch(`${base}/operations/${id}/events?ticket=x${ticket}`);
    expect(bad.status).toBe(401);
    await bad.body?.cancel();
    // ...and no other route.
    const elsewhere = await fetch(`${base}/operations/${id}?ticket=${ticket}`);
    expect(elsewhere.status).toBe(401);
    await elsewhere.body?.cancel();

    const abort = new AbortController();
    const stream = await fetch(`${base}/operations/${id}/events?ticket=${ticket}`, {
      signal: abort.signal,
    });
    expect(stream.status).toBe(200);
    expect(stream.headers.get("content-type")).toMatch(/text\/event-stream/);
    const reader = stream.body!.getReader();
    let text = "";
    while (!text.includes("event: status")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    expect(text).toContain("event: status");
    abort.abort();
  });
});

describe("GET /tasks", () => {
  it("offers both tasks, the workers' transform plugins and the channels that are on", async () => {
    const res = await app.inject({ method: "GET", url: "/tasks", headers: auth(ACME) });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      tasks: [
        { name: "http-enrich" },
        { name: "transform", plugins: expect.arrayContaining(["noop", "score"]) },
      ],
      notify: { webhook: true, email: false },
    });
  });
});

describe("POST /workbooks/preview", () => {
  const preview = async (parts: FormPart[]) => {
    const { payload, headers } = await multipart(parts);
    return app.inject({
      method: "POST",
      url: "/workbooks/preview",
      payload,
      headers: { ...headers, ...auth(ACME) },
    });
  };

  it("shows the sheets, the header row and the first rows of the sheet asked for", async () => {
    const data = await simpleXlsx(
      [
        ["customer_id", "amount"],
        ["C1", 10],
        ["C2", 20],
      ],
      "customers",
    );
    const first = await preview([{ name: "file", filename: "c.xlsx", data }]);
    expect(first.statusCode, first.body).toBe(200);
    expect(first.json()).toEqual({
      format: "xlsx",
      sheets: ["customers"],
      sheet: "customers",
      headers: ["customer_id", "amount"],
      rows: [
        ["C1", 10],
        ["C2", 20],
      ],
    });
    const missing = await preview([
      { name: "sheet", value: "nope" },
      { name: "file", filename: "c.xlsx", data },
    ]);
    expect(missing.statusCode).toBe(422);
    expect(missing.json().error.message).toMatch(/sheet "nope" not found \(sheets: "customers"\)/);
  });

  it("reads CSV, and refuses what the intake refuses, naming it", async () => {
    const csv = await preview([
      { name: "file", filename: "p.csv", type: "text/csv", data: "name,n\nada,007\n" },
    ]);
    expect(csv.json()).toEqual({
      format: "csv",
      sheets: [],
      sheet: null,
      headers: ["name", "n"],
      rows: [["ada", "007"]],
    });
    const dup = await preview([
      { name: "file", filename: "p.csv", type: "text/csv", data: "a,a\n1,2\n" },
    ]);
    expect(dup.statusCode).toBe(422);
    expect(dup.json().error.message).toMatch(/duplicate header "a"/);
    const notWorkbook = await preview([
      { name: "file", filename: "x.pdf", type: "application/pdf", data: "%PDF-1.4" },
    ]);
    expect(notWorkbook.statusCode).toBe(415);
    const big = await preview([
      { name: "file", filename: "p.csv", type: "text/csv", data: `a\n${"x\n".repeat(600_000)}` },
    ]);
    expect(big.statusCode).toBe(413);
    expect(big.json().error.message).toMatch(/SHARDFLEET_MAX_UPLOAD_MB/);
  });
});
