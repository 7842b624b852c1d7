/**
 * The tenants corpus (issue 13): generated cases of tenant crossing, missing and bad tokens,
 * the old token format, caps, a trickling upload, the rate limit and an anonymous API beyond
 * loopback — each asserting status, message and, for submissions, that nothing was persisted.
 * Runs the API against the real local S3/SQS server; nothing is mocked.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../../src/scheduler/api/app.ts";
import { checkExposure } from "../../src/scheduler/api/exposure.ts";
import { TenantDirectory } from "../../src/scheduler/api/tenants.ts";
import { CostService } from "../../src/scheduler/cost/cost-service.ts";
import { TablePriceSource } from "../../src/scheduler/cost/price-source.ts";
import { startScheduler } from "../../src/scheduler/main.ts";
import { OperationService } from "../../src/scheduler/operations.ts";
import { systemClock } from "../../src/shared/clock.ts";
import { loadConfig, parseApiTokens } from "../../src/shared/config.ts";
import { ConfigError } from "../../src/shared/errors.ts";
import { keys, OPERATIONS_PREFIX, SCRATCH_PREFIX } from "../../src/shared/keys.ts";
import { silentLogger } from "../../src/shared/logger.ts";
import { manifestSchema } from "../../src/shared/schemas/operation.ts";
import { tokenLine } from "../../src/shared/schemas/tokens.ts";
import { capturingLogger, type FormPart, multipart, transformSpec } from "../support/api.ts";
import { type LocalAws, startLocalAws } from "../support/local-aws.ts";

const token = () => randomBytes(32).toString("hex");
const ACME = token();
const ACME_NEXT = token(); // a rotation: the same tenant
const GLOBEX = token();
const ADMIN = token();
const LEGACY = token(); // old format: a plain token a line
const CAPPED = token();

const TOKENS_TEXT = [
  "# tenants",
  tokenLine({ tenant: "acme", role: "member", token: ACME }),
  tokenLine({ tenant: "acme", role: "member", token: ACME_NEXT }),
  tokenLine({ tenant: "globex", role: "member", token: GLOBEX }),
  tokenLine({ tenant: "ops", role: "admin", token: ADMIN }),
  `${tokenLine({ tenant: "small", role: "member", token: CAPPED })} max-operations=1`,
  LEGACY,
  "",
].join("\n");

let env: LocalAws;
let app: FastifyInstance;
let directory: TenantDirectory;

function appWith(limits: Parameters<typeof buildApp>[0]["limits"] = {}, logger = silentLogger()) {
  const operations = new OperationService({ store: env.store, logger, clock: systemClock });
  const cost = new CostService({
    store: env.store,
    clock: systemClock,
    logger,
    prices: new TablePriceSource(),
  });
  return buildApp({
    operations,
    cost,
    logger,
    maxUploadBytes: 8 << 20,
    tenants: directory,
    // The corpus sends far more than the default 600 a minute only in the rate-limit case.
    limits: { rateLimitPerMinute: 0, ...limits },
  });
}

beforeAll(async () => {
  env = await startLocalAws("tenants-corpus");
  directory = new TenantDirectory(parseApiTokens(TOKENS_TEXT, "SHARDFLEET_API_TOKENS_FILE"), {
    maxOperations: 10,
  });
  app = appWith();
});

afterAll(async () => {
  await app?.close();
  await env?.close();
});

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

async function allOperationObjects(): Promise<string[]> {
  return [...(await env.store.list(OPERATIONS_PREFIX)), ...(await env.store.list(SCRATCH_PREFIX))];
}

async function deleteAll(): Promise<void> {
  await env.store.deletePrefix(OPERATIONS_PREFIX);
  await env.store.deletePrefix(SCRATCH_PREFIX);
}

const SPEC: FormPart = { name: "spec", value: JSON.stringify(transformSpec()) };
const CSV: FormPart = {
  name: "file",
  filename: "people.csv",
  type: "text/csv",
  data: "name,city\nada,london\nalan,wilmslow\n",
};

async function submit(as: string, target = app) {
  const { payload, headers } = await multipart([SPEC, CSV]);
  return target.inject({
    method: "POST",
    url: "/operations",
    payload,
    headers: { ...headers, ...bearer(as) },
  });
}

function errorOf(res: { json(): unknown }): { code: string; message: string } {
  return (res.json() as { error: { code: string; message: string } }).error;
}

describe("control routes: tenant-scoped, idempotent, 409 naming the state", () => {
  let acmeOp: string;
  beforeAll(async () => {
    const res = await submit(ACME);
    expect(res.statusCode).toBe(202);
    acmeOp = (res.json() as { id: string }).id;
  });
  afterAll(deleteAll);

  const control = (id: string, action: string, as: string) =>
    app.inject({ method: "POST", url: `/operations/${id}/${action}`, headers: bearer(as) });

  it.each(["cancel", "pause", "resume", "retry"])(
    "%s: globex gets 404 like an unknown id, and the operation is left as it was",
    async (action) => {
      const unknownId = "op-000000000-0000000000";
      const crossing = await control(acmeOp, action, GLOBEX);
      const unknown = await control(unknownId, action, GLOBEX);
      expect(crossing.statusCode).toBe(404);
      expect(unknown.statusCode).toBe(404);
      expect(errorOf(crossing)).toEqual({
        code: "NOT_FOUND",
        message: errorOf(unknown).message.replace(unknownId, acmeOp),
      });
      const view = await app.inject({ url: `/operations/${acmeOp}`, headers: bearer(ACME) });
      expect((view.json() as { status: string }).status).toBe("queued");
    },
  );

  it("pause of a queued operation is 409 naming the state; cancel is 202 then 200; resume then 409", async () => {
    const pause = await control(acmeOp, "pause", ACME);
    expect(pause.statusCode).toBe(409);
    expect(errorOf(pause)).toEqual({
      code: "INVALID_STATE",
      message: `cannot pause operation ${acmeOp}: it is queued`,
    });
    const first = await control(acmeOp, "cancel", ACME_NEXT);
    expect(first.statusCode).toBe(202);
    expect(first.json()).toMatchObject({ id: acmeOp, status: "cancelling" });
    const again = await control(acmeOp, "cancel", ACME);
    expect(again.statusCode).toBe(200);
    expect(again.json()).toMatchObject({ id: acmeOp, status: "cancelling" });
    const resume = await control(acmeOp, "resume", ACME);
    expect(resume.statusCode).toBe(409);
    expect(errorOf(resume).message).toBe(`cannot resume operation ${acmeOp}: it is cancelling`);
    // An admin controls any tenant's operation.
    expect((await control(acmeOp, "cancel", ADMIN)).statusCode).toBe(200);
  });
});

describe("tenant crossing: another tenant's operation answers exactly as an unknown id", () => {
  let acmeOp: string;
  beforeAll(async () => {
    const res = await submit(ACME);
    expect(res.statusCode).toBe(202);
    acmeOp = (res.json() as { id: string }).id;
  });
  afterAll(deleteAll);

  const routes = [
    { route: "read", path: (id: string) => `/operations/${id}`, own: 200 },
    { route: "result", path: (id: string) => `/operations/${id}/result`, own: 409 },
    { route: "cost", path: (id: string) => `/operations/${id}/cost`, own: 409 },
    { route: "cost csv", path: (id: string) => `/operations/${id}/cost?format=csv`, own: 409 },
  ];

  it.each(routes)(
    "$route: globex gets 404 like an unknown id; acme's own token does not",
    async ({ path, own }) => {
      const unknownId = "op-000000000-0000000000";
      const crossing = await app.inject({
        method: "GET",
        url: path(acmeOp),
        headers: bearer(GLOBEX),
      });
      const unknown = await app.inject({
        method: "GET",
        url: path(unknownId),
        headers: bearer(GLOBEX),
      });
      expect(crossing.statusCode).toBe(404);
      expect(unknown.statusCode).toBe(404);
      // The same code and the same words, the id aside: nothing tells the id exists.
      expect(errorOf(crossing)).toEqual({
        code: "NOT_FOUND",
        message: errorOf(unknown).message.replace(unknownId, acmeOp),
      });
      for (const t of [ACME, ACME_NEXT]) {
        const mine = await app.inject({ method: "GET", url: path(acmeOp), headers: bearer(t) });
        expect(mine.statusCode).toBe(own);
      }
    },
  );

  it.each([
    { who: "globex", t: GLOBEX, sees: false },
    { who: "the old-format token (tenant default)", t: LEGACY, sees: false },
    { who: "acme", t: ACME, sees: true },
    { who: "an admin", t: ADMIN, sees: true },
  ])("list: $who sees acme's operation: $sees", async ({ t, sees }) => {
    const res = await app.inject({ method: "GET", url: "/operations", headers: bearer(t) });
    expect(res.statusCode).toBe(200);
    const ids = (res.json() as { operations: { id: string; tenant: string }[] }).operations;
    expect(ids.some((o) => o.id === acmeOp)).toBe(sees);
  });

  it("an admin reads any tenant's operation, and the view names its tenant", async () => {
    const res = await app.inject({
      method: "GET",
      url: `/operations/${acmeOp}`,
      headers: bearer(ADMIN),
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ id: acmeOp, tenant: "acme" });
  });

  it("the manifest records the tenant; a manifest from before tenants reads as default", async () => {
    const manifest = await env.store.getJson(keys.manifest(acmeOp), manifestSchema);
    expect(manifest?.tenant).toBe("acme");
    const { tenant: _, ...old } = manifest!;
    expect(manifestSchema.parse(old).tenant).toBe("default");
  });
});

describe("tokens", () => {
  const routes = [
    "/operations",
    "/operations/op-000000000-0000000000",
    "/operations/op-000000000-0000000000/result",
    "/operations/op-000000000-0000000000/cost",
    "/whoami",
  ];
  it.each(routes)("401 on %s without a token and with a wrong one", async (url) => {
    for (const [headers, message] of [
      [{}, /^missing bearer token/],
      [bearer(token()), /^invalid bearer token$/],
    ] as const) {
      const res = await app.inject({ method: "GET", url, headers });
      expect(res.statusCode).toBe(401);
      expect(res.headers["www-authenticate"]).toBe("Bearer");
      expect(errorOf(res).code).toBe("UNAUTHORIZED");
      expect(errorOf(res).message).toMatch(message);
    }
  });

  it.each([
    { who: "acme", t: ACME, tenant: "acme", role: "member" },
    { who: "an admin", t: ADMIN, tenant: "ops", role: "admin" },
    { who: "the old format", t: LEGACY, tenant: "default", role: "member" },
  ])("GET /whoami names the tenant of $who", async ({ t, tenant, role }) => {
    const res = await app.inject({ method: "GET", url: "/whoami", headers: bearer(t) });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ tenant, role });
  });

  it("an old-format token submits as tenant default", async () => {
    const res = await submit(LEGACY);
    expect(res.statusCode).toBe(202);
    const { id } = res.json() as { id: string };
    const view = await app.inject({
      method: "GET",
      url: `/operations/${id}`,
      headers: bearer(LEGACY),
    });
    expect(view.json()).toMatchObject({ tenant: "default" });
    await deleteAll();
  });

  it("a scheduler started with an old-format file warns that its tokens are tenant default", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "tenants-corpus-"));
    const file = path.join(dir, "tokens");
    await writeFile(
      file,
      `${LEGACY}\n${tokenLine({ tenant: "acme", role: "member", token: ACME })}\n`,
    );
    const { logger, lines } = capturingLogger();
    const config = loadConfig({
      SHARDFLEET_API_PORT: "0",
      SHARDFLEET_API_TOKENS_FILE: file,
      SHARDFLEET_WORK_QUEUE_URL: env.resources.queues.work,
      SHARDFLEET_BUCKET: env.resources.bucket,
    });
    const running = await startScheduler({ config, clients: env.clients, logger });
    try {
      expect(lines).toContainEqual(
        expect.objectContaining({
          level: 40,
          tokens: 1,
          msg: expect.stringMatching(/^old token format: plain tokens belong to tenant default/),
        }),
      );
      expect(JSON.stringify(lines)).not.toContain(LEGACY);
      const me = await fetch(`${running.url}/whoami`, { headers: bearer(LEGACY) });
      expect(await me.json()).toMatchObject({ tenant: "default", role: "member" });
    } finally {
      await running.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("the tokens file never holds a token: lines hold its SHA-256", () => {
    expect(TOKENS_TEXT).not.toContain(ACME);
    expect(TOKENS_TEXT).not.toContain(ADMIN);
  });

  it.each([
    [`tenant=Acme sha256=${"a".repeat(64)}`, /line 1: tenant: must be 1-63 lower-case/],
    ["tenant=acme sha256=abc", /line 1: sha256: must be the token's SHA-256/],
    [`tenant=acme sha256=${"a".repeat(64)} role=root`, /line 1: role:/],
    [`tenant=acme sha256=${"a".repeat(64)} max-ops=3`, /line 1: unknown key max-ops/],
    [
      `# two lines of one tenant\ntenant=acme sha256=${"a".repeat(64)} max-operations=2\ntenant=acme sha256=${"b".repeat(64)} max-operations=3`,
      /line 3: maxOperations 3 contradicts 2/,
    ],
  ])("a bad token line stops the start, naming the line: %s", (text, message) => {
    expect(() => parseApiTokens(text, "SHARDFLEET_API_TOKENS_FILE")).toThrow(message);
  });
});

describe("caps and limits", () => {
  afterEach(deleteAll);

  it("429 over the tenant's operations cap, before any byte is stored", async () => {
    const first = await submit(CAPPED);
    expect(first.statusCode).toBe(202);
    const before = await allOperationObjects();
    const second = await submit(CAPPED);
    expect(second.statusCode).toBe(429);
    expect(errorOf(second)).toEqual({
      code: "LIMIT_EXCEEDED",
      message: expect.stringMatching(
        /tenant small has 1 unfinished operation\(s\): its cap max-operations is 1/,
      ),
    });
    expect(await allOperationObjects()).toEqual(before);
    // Another tenant is not held back by it.
    expect((await submit(ACME)).statusCode).toBe(202);
  });

  it("429 over the rate limit, per token, with Retry-After; /healthz is never limited", async () => {
    const limited = appWith({ rateLimitPerMinute: 3 });
    try {
      const get = (t: string) =>
        limited.inject({ method: "GET", url: "/whoami", headers: bearer(t) });
      for (let i = 0; i < 3; i++) expect((await get(GLOBEX)).statusCode).toBe(200);
      const over = await get(GLOBEX);
      expect(over.statusCode).toBe(429);
      expect(over.headers["retry-after"]).toBeDefined();
      expect(errorOf(over)).toEqual({
        code: "RATE_LIMITED",
        message: expect.stringMatching(/^rate limit of 3 requests a minute exceeded/),
      });
      expect((await get(ACME)).statusCode).toBe(200);
      for (let i = 0; i < 5; i++) {
        expect((await limited.inject({ method: "GET", url: "/healthz" })).statusCode).toBe(200);
      }
    } finally {
      await limited.close();
    }
  });

  it("429 after too many refused tokens from one address; a good token still passes", async () => {
    const guarded = appWith({ failedAuthPerMinute: 3 });
    try {
      const get = (headers: Record<string, string>, remoteAddress = "198.51.100.9") =>
        guarded.inject({ method: "GET", url: "/operations", headers, remoteAddress });
      for (let i = 0; i < 3; i++) expect((await get(bearer(token()))).statusCode).toBe(401);
      const over = await get({});
      expect(over.statusCode).toBe(429);
      expect(over.headers["retry-after"]).toBeDefined();
      expect(errorOf(over)).toEqual({
        code: "RATE_LIMITED",
        message: expect.stringMatching(/^too many refused tokens from this address \(limit 3/),
      });
      expect((await get(bearer(ACME))).statusCode).toBe(200);
      // Another address is counted on its own.
      expect((await get(bearer(token()), "198.51.100.10")).statusCode).toBe(401);
    } finally {
      await guarded.close();
    }
  });

  it("behind a trusted proxy, refused tokens count per forwarded client address", async () => {
    const guarded = appWith({ failedAuthPerMinute: 2, trustedProxies: 1 });
    try {
      // Every request comes from the load balancer's address; X-Forwarded-For names the client.
      const get = (client: string) =>
        guarded.inject({
          method: "GET",
          url: "/operations",
          remoteAddress: "10.0.1.20",
          headers: { ...bearer(token()), "x-forwarded-for": client },
        });
      for (let i = 0; i < 2; i++) expect((await get("203.0.113.1")).statusCode).toBe(401);
      expect((await get("203.0.113.1")).statusCode).toBe(429);
      expect((await get("203.0.113.2")).statusCode).toBe(401);
    } finally {
      await guarded.close();
    }
  });

  it("without tokens: callers on this machine are not limited, other addresses are", async () => {
    const operations = new OperationService({
      store: env.store,
      logger: silentLogger(),
      clock: systemClock,
    });
    const open = buildApp({
      operations,
      logger: silentLogger(),
      maxUploadBytes: 1 << 20,
      limits: { rateLimitPerMinute: 2 },
    });
    try {
      const get = (remoteAddress: string) =>
        open.inject({ method: "GET", url: "/whoami", remoteAddress });
      for (let i = 0; i < 5; i++) expect((await get("127.0.0.1")).statusCode).toBe(200);
      expect((await get("::ffff:127.0.0.1")).statusCode).toBe(200);
      expect((await get("203.0.113.7")).statusCode).toBe(200);
      expect((await get("203.0.113.7")).statusCode).toBe(200);
      const over = await get("203.0.113.7");
      expect(over.statusCode).toBe(429);
      expect(errorOf(over).code).toBe("RATE_LIMITED");
      // Anonymous callers count per address: one cannot use up another's allowance.
      expect((await get("203.0.113.8")).statusCode).toBe(200);
    } finally {
      await open.close();
    }
  });

  it("sends security headers fit for a same-origin web console", async () => {
    const res = await app.inject({ method: "GET", url: "/whoami", headers: bearer(ACME) });
    expect(res.headers["content-security-policy"]).toMatch(/default-src 'self'/);
    expect(res.headers["x-content-type-options"]).toBe("nosniff");
    expect(res.headers["x-frame-options"]).toBe("SAMEORIGIN");
  });
});

describe("a trickling upload", () => {
  afterEach(deleteAll);

  /** Posts a multipart body: `fast` at once, then `trickle` one byte every 250 ms (4 B/s). */
  async function slowPost(url: URL, fast: Buffer, trickle: Buffer, contentType: string) {
    return new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest({
        host: url.hostname,
        port: url.port,
        path: "/operations",
        method: "POST",
        headers: {
          "content-type": contentType,
          "content-length": fast.length + trickle.length,
          ...bearer(ACME),
        },
      });
      let sent = 0;
      let timer: NodeJS.Timeout | undefined;
      req.on("error", (err) => {
        clearInterval(timer);
        reject(err);
      });
      req.on("response", (res) => {
        clearInterval(timer);
        let body = "";
        res.on("data", (c) => {
          body += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.write(fast);
      timer = setInterval(() => {
        if (sent < trickle.length) req.write(trickle.subarray(sent, ++sent));
      }, 250);
    });
  }

  it.each([
    { where: "in the file, its upload to S3 under way", fastUpTo: (n: number) => n - 2_000 },
    { where: "in the spec, before any file part", fastUpTo: () => 60 },
  ])(
    "is cut off with 408 naming the minimum rate, and nothing is persisted: $where",
    async ({ fastUpTo }) => {
      const { logger } = capturingLogger();
      const live = appWith({ minUploadBytesPerSecond: 1024, uploadRateWindowMs: 500 }, logger);
      try {
        const url = new URL(await live.listen({ host: "127.0.0.1", port: 0 }));
        // A real upload under way: the spec and 200 kB of the file at once, then 4 B/s.
        const rows = "ada,london\n".repeat(20_000);
        const { payload, headers } = await multipart([
          SPEC,
          { name: "file", filename: "slow.csv", type: "text/csv", data: `name,city\n${rows}` },
        ]);
        const cut = fastUpTo(payload.length);
        const res = await slowPost(
          url,
          payload.subarray(0, cut),
          payload.subarray(cut),
          headers["content-type"]!,
        );
        expect(res.status).toBe(408);
        const body = JSON.parse(res.body) as { error: { code: string; message: string } };
        expect(body.error.code).toBe("UPLOAD_TOO_SLOW");
        expect(body.error.message).toMatch(/under the minimum of 1024 bytes\/s/);
        expect(await allOperationObjects()).toEqual([]);
      } finally {
        await live.close();
      }
    },
  );

  it("while an upload at full speed over a real socket still streams through", async () => {
    const live = appWith({ minUploadBytesPerSecond: 1024, uploadRateWindowMs: 500 });
    try {
      const url = await live.listen({ host: "127.0.0.1", port: 0 });
      const { payload, headers } = await multipart([
        SPEC,
        {
          name: "file",
          filename: "big.csv",
          type: "text/csv",
          data: `name,city\n${"ada,london\n".repeat(300_000)}`,
        },
      ]);
      const res = await fetch(`${url}/operations`, {
        method: "POST",
        body: payload,
        headers: { ...headers, ...bearer(ACME) },
      });
      expect(res.status).toBe(202);
    } finally {
      await live.close();
    }
  });
});

describe("slow or silent connections", () => {
  /** Opens a raw socket, sends `first`, then one byte of `rest` every 200 ms; resolves on close. */
  function trickle(url: URL, first: string, rest: string) {
    return new Promise<{ answer: string; ms: number }>((resolve, reject) => {
      const started = Date.now();
      const socket = connect(Number(url.port), url.hostname);
      let answer = "";
      let sent = 0;
      const timer = setInterval(() => {
        if (sent < rest.length && !socket.destroyed) socket.write(rest[sent++]!);
      }, 200);
      socket.on("data", (d) => {
        answer += d;
      });
      socket.on("error", () => {}); // a reset after the answer is the point
      socket.on("close", () => {
        clearInterval(timer);
        resolve({ answer, ms: Date.now() - started });
      });
      socket.on("connect", () => socket.write(first));
      setTimeout(() => reject(new Error("the server kept the connection open")), 20_000).unref();
    });
  }

  it("headers trickled past the headers timeout get 408 and a closed connection", async () => {
    const live = appWith({ headersTimeoutMs: 1_000 });
    try {
      const url = new URL(await live.listen({ host: "127.0.0.1", port: 0 }));
      const { answer } = await trickle(
        url,
        "GET /whoami HTTP/1.1\r\nHost: x\r\n",
        "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
      );
      expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    } finally {
      await live.close();
    }
  });

  it("a socket silent inside a request is closed after the idle timeout", async () => {
    const live = appWith({ socketIdleTimeoutMs: 500, minUploadBytesPerSecond: 0 });
    try {
      const url = new URL(await live.listen({ host: "127.0.0.1", port: 0 }));
      // Headers complete, a body promised, then nothing at all.
      const { payload, headers } = await multipart([SPEC, CSV]);
      const head =
        `POST /operations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ACME}\r\n` +
        `Content-Type: ${headers["content-type"]}\r\nContent-Length: ${payload.length}\r\n\r\n`;
      const { ms } = await trickle(url, head, "");
      expect(ms).toBeGreaterThanOrEqual(400);
      expect(await allOperationObjects()).toEqual([]);
    } finally {
      await live.close();
    }
  });
});

describe("an API without tokens", () => {
  it.each(["0.0.0.0", "::", "10.0.0.5"])(
    "refuses to listen on %s unless SHARDFLEET_API_ALLOW_ANONYMOUS=true",
    async (host) => {
      const config = loadConfig({
        SHARDFLEET_API_HOST: host,
        SHARDFLEET_API_PORT: "0",
        SHARDFLEET_WORK_QUEUE_URL: env.resources.queues.work,
        SHARDFLEET_BUCKET: env.resources.bucket,
      });
      const started = startScheduler({ config, clients: env.clients, logger: silentLogger() });
      await expect(started).rejects.toThrow(ConfigError);
      await expect(started).rejects.toThrow(
        new RegExp(`refusing to serve the API on ${host.replace(/\./g, "\\.")} without tokens`),
      );
    },
  );

  it("serves loopback silently, and beyond it when allowed, warning loudly", () => {
    const { logger, lines } = capturingLogger();
    for (const host of ["127.0.0.1", "localhost", "::1"]) {
      checkExposure({ host, anonymous: true, allowAnonymous: false }, logger);
    }
    expect(lines).toEqual([]);
    checkExposure({ host: "0.0.0.0", anonymous: true, allowAnonymous: true }, logger);
    expect(lines).toEqual([
      expect.objectContaining({ level: 40, msg: expect.stringMatching(/^THE API IS OPEN/) }),
    ]);
    // With tokens, any host is fine.
    expect(() =>
      checkExposure({ host: "0.0.0.0", anonymous: false, allowAnonymous: false }, logger),
    ).not.toThrow();
  });
});
