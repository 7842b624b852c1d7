/**
 * The HTTP API against a real local S3/SQS server (integration tier). Every refused
 * submission must name its problem and leave nothing behind: no object under `operations/` or
 * `scratch/`, no message on the work queue.
 */
import { request as httpRequest } from "node:http";
import type { FastifyInstance } from "fastify";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  capturingLogger,
  type FormPart,
  multipart,
  testApp,
  transformSpec,
} from "../../../test/support/api.ts";
import { type LocalAws, startLocalAws } from "../../../test/support/local-aws.ts";
import { waitFor } from "../../../test/support/wait.ts";
import { simpleXlsx } from "../../../test/support/workbooks.ts";
import { systemClock } from "../../shared/clock.ts";
import { keys, OPERATIONS_PREFIX, SCRATCH_PREFIX } from "../../shared/keys.ts";
import { ObjectStore } from "../../shared/object-store.ts";
import { OperationService } from "../operations.ts";
import { buildApp } from "./app.ts";

const XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

let env: LocalAws;
let app: FastifyInstance;

beforeAll(async () => {
  env = await startLocalAws("api-test");
  app = testApp(env, { maxUploadBytes: 32 * 1024 * 1024 }).app;
});

afterAll(async () => {
  await app?.close();
  await env?.close();
});

async function post(parts: FormPart[], target = app) {
  const { payload, headers } = await multipart(parts);
  return target.inject({ method: "POST", url: "/operations", payload, headers });
}

const spec = (extra: Record<string, unknown> = {}): FormPart => ({
  name: "spec",
  value: JSON.stringify(transformSpec(extra)),
});
const csv = (text: string, filename = "people.csv"): FormPart => ({
  name: "file",
  filename,
  type: "text/csv",
  data: text,
});
const GOOD_CSV = "name,city\nada,london\nalan,wilmslow\n";

/** Every object of every operation, durable or scratch. */
async function allOperationObjects(): Promise<string[]> {
  return [...(await env.store.list(OPERATIONS_PREFIX)), ...(await env.store.list(SCRATCH_PREFIX))];
}

async function deleteAllOperations(): Promise<void> {
  await env.store.deletePrefix(OPERATIONS_PREFIX);
  await env.store.deletePrefix(SCRATCH_PREFIX);
}

async function expectNothingPersisted() {
  expect(await allOperationObjects()).toEqual([]);
  const messages = await env.queue.receive(env.resources.queues.work, {
    max: 10,
    waitSeconds: 0,
    visibilityTimeout: 0,
  });
  expect(messages).toEqual([]);
}

async function expectRefused(
  res: Awaited<ReturnType<typeof post>>,
  status: number,
  code: string,
  mentions: RegExp,
) {
  const body = res.json() as { error: { code: string; message: string } };
  expect({ status: res.statusCode, code: body.error.code }).toEqual({ status, code });
  expect(body.error.message).toMatch(mentions);
  expect(body.error.message).not.toMatch(/\n\s+at /); // no stack trace
  await expectNothingPersisted();
}

describe("POST /operations refuses bad input and persists nothing", () => {
  afterEach(async () => {
    // A failed assertion above must not leak objects into the next case.
    await deleteAllOperations();
  });

  it("415 for a file that is not a workbook (by name and type)", async () => {
    const res = await post([
      spec(),
      { name: "file", filename: "report.pdf", type: "application/pdf", data: "%PDF-1.7 ..." },
    ]);
    await expectRefused(res, 415, "UNSUPPORTED_MEDIA_TYPE", /report\.pdf.*not a workbook/);
  });

  it("415 for an .xlsx whose content is not a zip archive", async () => {
    const res = await post([
      spec(),
      { name: "file", filename: "fake.xlsx", type: XLSX, data: "name,city\nada,london\n" },
    ]);
    await expectRefused(res, 415, "UNSUPPORTED_MEDIA_TYPE", /fake\.xlsx.*not a zip/);
  });

  it("415 for legacy .xls, with a hint", async () => {
    const res = await post([
      spec(),
      {
        name: "file",
        filename: "old.xls",
        type: "application/vnd.ms-excel",
        data: "\xd0\xcf\x11\xe0",
      },
    ]);
    await expectRefused(res, 415, "UNSUPPORTED_MEDIA_TYPE", /save it as \.xlsx/);
  });

  it("422 for a corrupt xlsx (a zip header, then garbage)", async () => {
    const data = Buffer.concat([Buffer.from("PK\x03\x04"), Buffer.alloc(600, 7)]);
    const res = await post([spec(), { name: "file", filename: "broken.xlsx", type: XLSX, data }]);
    await expectRefused(res, 422, "WORKBOOK_INVALID", /xlsx|workbook/i);
  });

  it("422 for a truncated xlsx", async () => {
    const whole = await simpleXlsx([["a"], [1]]);
    const res = await post([
      spec(),
      { name: "file", filename: "cut.xlsx", type: XLSX, data: whole.subarray(0, whole.length / 2) },
    ]);
    await expectRefused(res, 422, "WORKBOOK_INVALID", /xlsx|workbook/i);
  });

  it("422 for an empty workbook (xlsx with an empty sheet, and a 0-byte csv)", async () => {
    const empty = await simpleXlsx([]);
    const res = await post([spec(), { name: "file", filename: "e.xlsx", type: XLSX, data: empty }]);
    await expectRefused(res, 422, "WORKBOOK_INVALID", /empty/);
    await expectRefused(await post([spec(), csv("")]), 422, "WORKBOOK_INVALID", /empty/);
  });

  it("422 for a header row without data rows", async () => {
    await expectRefused(
      await post([spec(), csv("name,city\n")]),
      422,
      "WORKBOOK_INVALID",
      /no data rows/,
    );
  });

  it("422 for an empty header cell, naming the column", async () => {
    const data = await simpleXlsx([
      ["name", null, "city"],
      ["ada", 1, "london"],
    ]);
    const res = await post([spec(), { name: "file", filename: "h.xlsx", type: XLSX, data }]);
    await expectRefused(res, 422, "WORKBOOK_INVALID", /column B is empty/);
  });

  it("422 for a duplicate header, naming it", async () => {
    const res = await post([spec(), csv("name,name\nada,lovelace\n")]);
    await expectRefused(res, 422, "WORKBOOK_INVALID", /duplicate header "name"/);
  });

  for (const order of ["spec first", "file first"] as const) {
    const send = (specPart: FormPart, filePart: FormPart = csv(GOOD_CSV)) =>
      post(order === "spec first" ? [specPart, filePart] : [filePart, specPart]);

    it(`400 for spec JSON that does not parse (${order})`, async () => {
      const res = await send({ name: "spec", value: "{ task: transform" });
      await expectRefused(res, 400, "SPEC_INVALID", /"spec" is not valid JSON/);
    });

    it(`400 naming the path of a schema error (${order})`, async () => {
      const res = await send(spec({ shardSize: -1 }));
      await expectRefused(res, 400, "SPEC_INVALID", /shardSize/);
    });

    it(`400 naming the path inside task options (${order})`, async () => {
      const res = await send({
        name: "spec",
        value: JSON.stringify({ task: { name: "transform", options: { module: "../evil" } } }),
      });
      await expectRefused(res, 400, "SPEC_INVALID", /task\.options\.module/);
    });

    it(`400 for an unknown task (${order})`, async () => {
      const res = await send({
        name: "spec",
        value: JSON.stringify({ task: { name: "teleport" } }),
      });
      await expectRefused(res, 400, "UNKNOWN_TASK", /unknown task "teleport"/);
    });
  }

  it("400 for a missing file", async () => {
    await expectRefused(await post([spec()]), 400, "BAD_REQUEST", /missing "file"/);
  });

  it("400 for a missing spec (the uploaded file is deleted)", async () => {
    await expectRefused(await post([csv(GOOD_CSV)]), 400, "BAD_REQUEST", /missing "spec"/);
  });

  it("400 for an unexpected field", async () => {
    const res = await post([spec(), { name: "colour", value: "blue" }, csv(GOOD_CSV)]);
    await expectRefused(res, 400, "BAD_REQUEST", /unexpected field "colour"/);
  });

  it("400 for a file sent as a text field", async () => {
    const res = await post([spec(), { name: "file", value: GOOD_CSV }]);
    await expectRefused(res, 400, "BAD_REQUEST", /"file" must be a file upload/);
  });

  it("400 for two files", async () => {
    const res = await post([spec(), csv(GOOD_CSV), csv(GOOD_CSV, "again.csv")]);
    await expectRefused(res, 400, "BAD_REQUEST", /sent twice/);
  });

  it("413 for a file over the upload limit, after the file and before it (spec last)", async () => {
    const small = testApp(env, { maxUploadBytes: 1000 }).app;
    try {
      const big = `name,city\n${"ada,london\n".repeat(500)}`;
      await expectRefused(
        await post([spec(), csv(big)], small),
        413,
        "PAYLOAD_TOO_LARGE",
        /over the upload limit of 1000 bytes/,
      );
      await expectRefused(
        await post([csv(big), spec()], small),
        413,
        "PAYLOAD_TOO_LARGE",
        /upload limit/,
      );
      // A file just under the limit is accepted by the same app.
      const ok = await post([spec(), csv(GOOD_CSV)], small);
      expect(ok.statusCode).toBe(202);
    } finally {
      await small.close();
    }
  });

  it("413 for a file over a limit bigger than one multipart part (the upload is aborted)", async () => {
    const mib = 1024 * 1024;
    const small = testApp(env, { maxUploadBytes: 9 * mib }).app;
    try {
      const big = `name,city\n${"ada,london\n".repeat(Math.ceil((10 * mib) / 11))}`;
      await expectRefused(
        await post([spec(), csv(big)], small),
        413,
        "PAYLOAD_TOO_LARGE",
        /upload limit/,
      );
    } finally {
      await small.close();
    }
  });

  it("415 for a request that is not multipart", async () => {
    const res = await app.inject({
      method: "POST",
      url: "/operations",
      payload: { spec: transformSpec() },
    });
    await expectRefused(res, 415, "UNSUPPORTED_MEDIA_TYPE", /multipart\/form-data/);
  });

  it("400 for a malformed multipart body", async () => {
    const res = await app.inject({
      method: "POST",
      url: "/operations",
      payload: '--xyz\r\nContent-Disposition: form-data; name="spec"\r\n\r\n{}',
      headers: { "content-type": "multipart/form-data; boundary=xyz" },
    });
    await expectRefused(res, 400, "BAD_REQUEST", /multipart/);
  });
});

describe("POST /operations accepts a good submission", () => {
  afterEach(async () => {
    await deleteAllOperations();
  });

  it("202 with id and status, whichever part comes first; the manifest records the input", async () => {
    for (const parts of [
      [spec(), csv(GOOD_CSV)],
      [csv(GOOD_CSV), spec()],
    ]) {
      const res = await post(parts);
      expect(res.statusCode).toBe(202);
      const { id, status } = res.json() as { id: string; status: string };
      expect(status).toBe("queued");
      expect(res.headers.location).toBe(`/operations/${id}`);
      const view = (await app.inject(`/operations/${id}`)).json();
      expect(view).toMatchObject({
        id,
        name: "test op",
        status: "queued",
        task: "transform",
        rows: { total: null, done: 0, failed: 0 },
        shards: { total: 0, pending: 0, running: 0, done: 0, failed: 0 },
        startedAt: null,
        finishedAt: null,
      });
    }
    // Submission sends nothing to the queue: splitting is the scheduler's job.
    const messages = await env.queue.receive(env.resources.queues.work, {
      max: 10,
      waitSeconds: 0,
      visibilityTimeout: 0,
    });
    expect(messages).toEqual([]);
  });

  it("takes an xlsx sent as application/octet-stream without an extension (sniffed)", async () => {
    const data = await simpleXlsx([["name"], ["ada"]]);
    const res = await post([
      spec(),
      { name: "file", filename: "upload", type: "application/octet-stream", data },
    ]);
    expect(res.statusCode).toBe(202);
  });

  it("streams a file bigger than one multipart part to S3 intact", async () => {
    const big = `name,city\n${"ada,london\n".repeat(1_000_000)}`;
    const res = await post([spec(), csv(big)]);
    expect(res.statusCode).toBe(202);
    const { id } = res.json() as { id: string };
    const stored = await env.store.getText(keys.input(id, "csv"));
    expect(stored?.length).toBe(big.length);
    expect(stored === big).toBe(true);
  });

  it("takes the spec as a JSON file part (curl -F spec=@spec.json)", async () => {
    const res = await post([
      {
        name: "spec",
        filename: "spec.json",
        type: "application/json",
        data: JSON.stringify(transformSpec()),
      },
      csv(GOOD_CSV),
    ]);
    expect(res.statusCode).toBe(202);
  });
});

describe("GET /operations", () => {
  afterEach(async () => {
    await deleteAllOperations();
  });

  it("lists newest first and honours ?limit", async () => {
    const ids: string[] = [];
    for (const name of ["first", "second", "third"]) {
      const res = await post([spec({ name }), csv(GOOD_CSV)]);
      ids.push((res.json() as { id: string }).id);
      // Ids order by creation time to the millisecond.
      await new Promise((r) => setTimeout(r, 2));
    }
    const all = (await app.inject("/operations")).json() as {
      operations: { id: string; name: string }[];
    };
    expect(all.operations.map((o) => o.name)).toEqual(["third", "second", "first"]);
    const two = (await app.inject("/operations?limit=2")).json() as {
      operations: { id: string }[];
    };
    expect(two.operations.map((o) => o.id)).toEqual([ids[2], ids[1]]);
  });

  it("400 for a bad limit", async () => {
    const res = await app.inject("/operations?limit=0");
    expect(res.statusCode).toBe(400);
    expect(res.json().error.message).toMatch(/limit/);
  });

  it("404 naming an unknown id; 400 for something that is not an id", async () => {
    const missing = await app.inject("/operations/op-nope");
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toEqual({
      error: { code: "NOT_FOUND", message: "operation op-nope not found" },
    });
    const bad = await app.inject("/operations/not.an.id");
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.message).toMatch(/"not\.an\.id" is not a valid operation id/);
  });

  it("result: 404 for an unknown id, 409 naming the status before it is ready", async () => {
    expect((await app.inject("/operations/op-nope/result")).statusCode).toBe(404);
    const { id } = (await post([spec(), csv(GOOD_CSV)])).json() as { id: string };
    const res = await app.inject(`/operations/${id}/result`);
    expect(res.statusCode).toBe(409);
    expect(res.json().error).toEqual({
      code: "NOT_READY",
      message: expect.stringMatching(new RegExp(`operation ${id} is queued`)),
    });
  });

  it("healthz answers ok; unknown routes get a JSON 404", async () => {
    expect((await app.inject("/healthz")).json()).toEqual({ ok: true });
    const res = await app.inject("/nowhere");
    expect(res.statusCode).toBe(404);
    expect(res.json().error.code).toBe("NOT_FOUND");
  });
});

describe("unexpected failures", () => {
  it("answer 500 with a generic message and log the error under err", async () => {
    const { logger, lines } = capturingLogger("error");
    // A bucket that does not exist: S3 answers NoSuchBucket, which is no fault of the caller.
    const store = new ObjectStore({ s3: env.clients.s3 }, { bucket: "no-such-bucket" });
    const broken = buildApp({
      operations: new OperationService({ store, logger, clock: systemClock }),
      logger,
      maxUploadBytes: 1000,
    });
    try {
      const res = await broken.inject("/operations");
      expect(res.statusCode).toBe(500);
      expect(res.json()).toEqual({
        error: { code: "INTERNAL", message: "internal error; see the scheduler's log" },
      });
      const logged = lines.find((l) => l.msg === "request failed") as {
        err?: { message?: string };
      };
      expect(logged?.err?.message).toMatch(/bucket/i);
    } finally {
      await broken.close();
    }
  });
});

describe("request logging", () => {
  it("logs each request at debug, never at info (clients poll twice a second)", async () => {
    for (const [level, expected] of [
      ["info", 0],
      ["debug", 1],
    ] as const) {
      const { logger, lines } = capturingLogger(level);
      const app = testApp(env, { logger }).app;
      try {
        expect((await app.inject("/healthz")).statusCode).toBe(200);
        expect(lines.filter((l) => l.msg === "incoming request")).toHaveLength(expected);
        expect(lines.filter((l) => l.msg === "request completed")).toHaveLength(expected);
      } finally {
        await app.close();
      }
    }
  });
});

describe("over real HTTP", () => {
  it("accepts a submission (the upload outlives the request body being read)", async () => {
    const live = testApp(env).app;
    const url = await live.listen({ host: "127.0.0.1", port: 0 });
    try {
      const form = new FormData();
      form.append("spec", JSON.stringify(transformSpec()));
      form.append("file", new Blob([await simpleXlsx([["name"], ["ada"]])]), "people.xlsx");
      const res = await fetch(`${url}/operations`, { method: "POST", body: form });
      expect(res.status).toBe(202);
      const { id } = (await res.json()) as { id: string };
      expect(await env.store.exists(keys.manifest(id))).toBe(true);
    } finally {
      await deleteAllOperations();
      await live.close();
    }
  });

  it("answers refusals before the upload ends, and the server still closes", async () => {
    const live = testApp(env, { maxUploadBytes: 4 * 1024 * 1024 }).app;
    const url = await live.listen({ host: "127.0.0.1", port: 0 });
    const big = Buffer.alloc(12 * 1024 * 1024, 0x61);
    const cases = [
      ["{not json", "a.csv", "text/csv", 400],
      [JSON.stringify(transformSpec()), "a.pdf", "application/pdf", 415],
      [JSON.stringify(transformSpec()), "a.csv", "text/csv", 413],
    ] as const;
    try {
      for (const [specText, filename, type, status] of cases) {
        const form = new FormData();
        form.append("spec", specText);
        form.append("file", new Blob([big], { type }), filename);
        const res = await fetch(`${url}/operations`, { method: "POST", body: form });
        expect(res.status).toBe(status);
        await res.body?.cancel();
      }
      await expectNothingPersisted();
    } finally {
      // A request whose body was never read to the end would keep this from resolving.
      await live.close();
    }
  });

  it("refuses (and cleans up after) a client that goes away mid-file", async () => {
    const { logger, lines } = capturingLogger();
    const live = testApp(env, { maxUploadBytes: 64 * 1024 * 1024, logger }).app;
    const url = new URL(await live.listen({ host: "127.0.0.1", port: 0 }));
    try {
      const boundary = "b0undary";
      const head = [
        `--${boundary}\r\ncontent-disposition: form-data; name="spec"\r\n\r\n${JSON.stringify(transformSpec())}\r\n`,
        `--${boundary}\r\ncontent-disposition: form-data; name="file"; filename="a.csv"\r\ncontent-type: text/csv\r\n\r\n`,
        "name,city\n",
      ].join("");
      const req = httpRequest({
        host: url.hostname,
        port: url.port,
        method: "POST",
        path: "/operations",
        headers: { "content-type": `multipart/form-data; boundary=${boundary}` },
      });
      req.on("error", () => {});
      req.write(head);
      req.write("ada,london\n".repeat(200_000));
      // Give the server time to start streaming the file, then vanish.
      await new Promise((r) => setTimeout(r, 200));
      req.destroy();
      const refused = await waitFor("the refusal in the log", async () =>
        lines.find((l) => String(l.msg).startsWith("submission refused")),
      );
      expect(refused.msg).toMatch(/upload of "a\.csv" was cut short/);
      expect(await allOperationObjects()).toEqual([]);
    } finally {
      await live.close();
    }
  });
});

describe("bearer tokens", () => {
  const TOKEN = "7f".repeat(32);
  const NEXT = "Zm9yIHRoZSByb3RhdGlvbiwgYSBzZWNvbmQgdG9rZW4=";
  const captured = capturingLogger("debug");
  let secured: FastifyInstance;
  beforeAll(() => {
    secured = testApp(env, { logger: captured.logger, apiTokens: [TOKEN, NEXT] }).app;
  });
  afterAll(async () => {
    await secured?.close();
  });
  afterEach(async () => {
    await deleteAllOperations();
  });

  const get = (url: string, authorization?: string) =>
    secured.inject({ method: "GET", url, headers: authorization ? { authorization } : {} });

  async function expectUnauthorized(res: Awaited<ReturnType<typeof get>>, message: RegExp) {
    expect(res.statusCode).toBe(401);
    expect(res.headers["www-authenticate"]).toBe("Bearer");
    const body = res.json() as { error: { code: string; message: string } };
    expect(body.error.code).toBe("UNAUTHORIZED");
    expect(body.error.message).toMatch(message);
  }

  it("401 without a bearer token, on every route but /healthz", async () => {
    for (const url of ["/operations", "/operations/op-nope", "/operations/op-nope/result", "/x"]) {
      await expectUnauthorized(await get(url), /^missing bearer token/);
    }
    await expectUnauthorized(await get("/operations", `Basic ${TOKEN}`), /^missing bearer token/);
    await expectUnauthorized(await get("/operations", "Bearer"), /^missing bearer token/);
  });

  it("401 for a wrong token, whatever its length", async () => {
    for (const wrong of [
      "7e".repeat(32), // same length
      TOKEN.slice(0, -1), // a prefix
      `${TOKEN}0`, // one more character
      "x",
      "y".repeat(4096),
    ]) {
      await expectUnauthorized(
        await get("/operations", `Bearer ${wrong}`),
        /^invalid bearer token$/,
      );
    }
  });

  it("200 with either configured token (a rotation), and the scheme in any case", async () => {
    for (const authorization of [`Bearer ${TOKEN}`, `Bearer ${NEXT}`, `bearer ${TOKEN}`]) {
      const res = await get("/operations", authorization);
      expect(res.statusCode, authorization).toBe(200);
    }
  });

  it("leaves /healthz open for the load balancer", async () => {
    const res = await get("/healthz");
    expect({ status: res.statusCode, body: res.json() }).toEqual({
      status: 200,
      body: { ok: true },
    });
  });

  it("persists nothing for a refused submission, and takes one with a token", async () => {
    const { payload, headers } = await multipart([spec(), csv(GOOD_CSV)]);
    for (const authorization of [undefined, `Bearer ${"00".repeat(32)}`]) {
      const res = await secured.inject({
        method: "POST",
        url: "/operations",
        payload,
        headers: { ...headers, ...(authorization ? { authorization } : {}) },
      });
      expect(res.statusCode).toBe(401);
      await expectNothingPersisted();
    }
    const ok = await secured.inject({
      method: "POST",
      url: "/operations",
      payload,
      headers: { ...headers, authorization: `Bearer ${NEXT}` },
    });
    expect(ok.statusCode).toBe(202);
  });

  it("never logs the authorization header or a token", async () => {
    await get("/operations", `Bearer ${TOKEN}`);
    await get("/operations", "Bearer wrong-token-wrong-token-wrong-token");
    // Even a line that logs a request's headers on purpose has it redacted.
    captured.logger.info({ req: { headers: { authorization: `Bearer ${TOKEN}` } } }, "headers");
    const text = JSON.stringify(captured.lines);
    expect(captured.lines.some((l) => l.msg === "incoming request")).toBe(true);
    expect(captured.lines.some((l) => l.msg === "invalid bearer token")).toBe(true);
    for (const secret of [TOKEN, NEXT, "wrong-token-wrong-token"]) {
      expect(text).not.toContain(secret);
    }
    expect(captured.lines.find((l) => l.msg === "headers")).toMatchObject({
      req: { headers: { authorization: "[redacted]" } },
    });
  });
});
