import diagnosticsChannel from "node:diagnostics_channel";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { FakeClock } from "../../../test/support/fake-clock.ts";
import { type Clock, systemClock } from "../../shared/clock.ts";
import { type EgressPolicy, parseEgressAllow } from "../../shared/egress.ts";
import type { HostLookup } from "../../shared/egress-connector.ts";
import { BadInputError } from "../../shared/errors.ts";
import { silentLogger } from "../../shared/logger.ts";
import type { Cell } from "../../shared/schemas/cells.ts";
import { httpEnrichOptionsSchema } from "../../shared/schemas/tasks.ts";
import {
  HttpEnrichRunner,
  MAX_CELL_CHARS,
  MAX_RESPONSE_BYTES,
  parseRetryAfter,
  readPath,
} from "./http-enrich.ts";
import type { TaskRow } from "./task.ts";

type Handler = (req: IncomingMessage, body: string, res: ServerResponse) => void | Promise<void>;

let server: Server;
let base: string;
let handler: Handler;
let inFlight = 0;
let maxInFlight = 0;
let requests: Array<{
  method: string;
  url: string;
  body: string;
  headers: IncomingMessage["headers"];
}>;

beforeAll(async () => {
  server = createServer((req, res) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    res.on("close", () => {
      inFlight--;
    });
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (d: string) => {
      body += d;
    });
    req.on("end", () => {
      requests.push({ method: req.method ?? "", url: req.url ?? "", body, headers: req.headers });
      void Promise.resolve(handler(req, body, res)).catch((err: unknown) => {
        res.statusCode = 599;
        res.end(String(err));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const runners: HttpEnrichRunner[] = [];
afterEach(async () => {
  await Promise.all(runners.splice(0).map((r) => r.close()));
  requests = [];
  maxInFlight = 0;
});
requests = [];

function json(
  res: ServerResponse,
  status: number,
  value: unknown,
  headers: Record<string, string> = {},
) {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(value));
}

function runner(
  options: Record<string, unknown>,
  extra: {
    headers?: string[];
    clock?: Clock;
    random?: () => number;
    egress?: EgressPolicy;
    lookup?: HostLookup;
    operationId?: string;
  } = {},
) {
  const r = new HttpEnrichRunner(
    {
      logger: silentLogger(),
      clock: extra.clock ?? new FakeClock({ sleeps: "instant" }),
      random: extra.random ?? (() => 0.5),
      // The test server listens on loopback, which the default policy refuses.
      egress: extra.egress ?? parseEgressAllow("127.0.0.0/8"),
      ...(extra.lookup ? { lookup: extra.lookup } : {}),
    },
    httpEnrichOptionsSchema.parse(options),
    {
      ...(extra.headers ? { headers: extra.headers } : {}),
      ...(extra.operationId ? { operationId: extra.operationId } : {}),
    },
  );
  runners.push(r);
  return r;
}

function rows(...values: Array<Record<string, Cell>>): TaskRow[] {
  return values.map((v, index) => ({ index: index + 10, values: v }));
}

const ctx = () => ({ signal: new AbortController().signal, logger: silentLogger() });

describe("http-enrich templating", () => {
  it("URL-encodes values, writes dates as ISO and empty cells as nothing", async () => {
    handler = (_req, _body, res) => json(res, 200, {});
    const r = runner(
      { url: `${base}/people/{name}?born={born}&n={n}&x={empty}`, results: { ok: "ok" } },
      { headers: ["name", "born", "n", "empty"] },
    );
    await r.runRows(
      rows({ name: "Zoë & Co/1?", born: new Date("2001-02-03T04:05:06Z"), n: 42, empty: null }),
      ctx(),
    );
    expect(requests).toHaveLength(1);
    expect(requests[0]!.url).toBe(
      `/people/${encodeURIComponent("Zoë & Co/1?")}?born=${encodeURIComponent("2001-02-03T04:05:06.000Z")}&n=42&x=`,
    );
  });

  it("fills the body template, JSON-escaping values when the content type is JSON", async () => {
    handler = (_req, body, res) => json(res, 200, { echo: JSON.parse(body) });
    const r = runner({
      url: `${base}/echo`,
      method: "POST",
      headers: { "Content-Type": "application/json", "x-api-key": "k" },
      body: '{"name": "{name}", "id": {id}}',
      results: { name: "echo.name", id: "echo.id" },
    });
    const out = await r.runRows(rows({ name: 'say "hi"\n', id: 7 }), ctx());
    expect(out).toEqual([{ i: 10, r: { name: 'say "hi"\n', id: 7 } }]);
    expect(requests[0]!.method).toBe("POST");
    expect(requests[0]!.headers["x-api-key"]).toBe("k");
  });

  it("rejects a template naming an unknown column at creation, naming it", () => {
    expect(() =>
      runner({ url: `${base}/x/{nmae}`, results: { a: "a" } }, { headers: ["name"] }),
    ).toThrow(BadInputError);
    expect(() =>
      runner({ url: `${base}/x/{nmae}`, results: { a: "a" } }, { headers: ["name"] }),
    ).toThrow(/unknown column \{nmae\}/);
    expect(() =>
      runner({ url: `${base}/x`, body: "{missing}", results: { a: "a" } }, { headers: ["name"] }),
    ).toThrow(/body: unknown column \{missing\}/);
  });

  it("rejects URLs that are not http(s)", () => {
    expect(() => runner({ url: "ftp://example.com/{a}", results: { a: "a" } })).toThrow(
      /only http and https/,
    );
    expect(() => runner({ url: "not a url", results: { a: "a" } })).toThrow(/not a URL/);
  });
});

describe("http-enrich results", () => {
  it("maps dotted paths into the JSON response, missing paths as null", async () => {
    handler = (req, _body, res) =>
      json(res, 200, { tax: { due: 12.5, paid: false }, tags: ["a", "b"], id: req.url });
    const r = runner({
      url: `${base}/t/{id}`,
      results: {
        due: "tax.due",
        paid: "tax.paid",
        tags: "tags",
        first: "tags.0",
        none: "no.such.path",
      },
    });
    const out = await r.runRows(rows({ id: 1 }, { id: 2 }), ctx());
    expect(r.columns).toEqual(["due", "paid", "tags", "first", "none"]);
    expect(out).toEqual([
      { i: 10, r: { due: 12.5, paid: false, tags: '["a","b"]', first: "a", none: null } },
      { i: 11, r: { due: 12.5, paid: false, tags: '["a","b"]', first: "a", none: null } },
    ]);
  });

  it("gives a 404 empty result columns and no error when notFoundIsEmpty", async () => {
    handler = (_req, _body, res) => json(res, 404, { message: "no such person" });
    const r = runner({ url: `${base}/p/{id}`, results: { a: "a", b: "b" } });
    expect(await r.runRows(rows({ id: 1 }), ctx())).toEqual([{ i: 10, r: { a: null, b: null } }]);

    const strict = runner({ url: `${base}/p/{id}`, results: { a: "a" }, notFoundIsEmpty: false });
    const [row] = await strict.runRows(rows({ id: 1 }), ctx());
    expect(row?.e).toMatch(/^HTTP 404/);
    expect(row?.r).toBeUndefined();
  });

  it("fails a row on another 4xx at once, without retrying, with the body in one line", async () => {
    handler = (_req, _body, res) => {
      res.writeHead(400);
      res.end("bad id\nplease fix");
    };
    const clock = new FakeClock({ sleeps: "instant" });
    const r = runner({ url: `${base}/p/{id}`, results: { a: "a" } }, { clock });
    const out = await r.runRows(rows({ id: "x" }), ctx());
    expect(out).toEqual([{ i: 10, e: "HTTP 400: bad id please fix" }]);
    expect(requests).toHaveLength(1);
    expect(clock.sleeps).toEqual([]);
  });

  it("fails a row whose 2xx body is not JSON", async () => {
    handler = (_req, _body, res) => {
      res.writeHead(200);
      res.end("<html>");
    };
    const r = runner({ url: `${base}/p`, results: { a: "a" } });
    const [row] = await r.runRows(rows({}), ctx());
    expect(row?.e).toMatch(/not JSON/);
  });
});

describe("http-enrich retries", () => {
  it("retries a 503 with full-jitter backoff, then succeeds", async () => {
    let calls = 0;
    handler = (_req, _body, res) => {
      calls++;
      if (calls <= 2) json(res, 503, { busy: true });
      else json(res, 200, { v: "ok" });
    };
    const clock = new FakeClock({ sleeps: "instant" });
    const r = runner(
      { url: `${base}/r`, results: { v: "v" }, backoffMs: 100 },
      { clock, random: () => 0.5 },
    );
    expect(await r.runRows(rows({}), ctx())).toEqual([{ i: 10, r: { v: "ok" } }]);
    expect(calls).toBe(3);
    // random(0, base * 2^attempt) with random() = 0.5: 50, then 100.
    expect(clock.sleeps).toEqual([50, 100]);
  });

  it("draws the jitter between 0 and the exponential ceiling", async () => {
    handler = (_req, _body, res) => json(res, 500, {});
    const clock = new FakeClock({ sleeps: "instant" });
    const r = runner(
      { url: `${base}/r`, results: { v: "v" }, backoffMs: 100, retries: 3 },
      { clock, random: () => 0.999 },
    );
    await r.runRows(rows({}), ctx());
    expect(clock.sleeps).toEqual([99, 199, 399]);
  });

  it("honours Retry-After in seconds on a 429", async () => {
    let calls = 0;
    handler = (_req, _body, res) => {
      calls++;
      if (calls === 1) json(res, 429, {}, { "retry-after": "3" });
      else json(res, 200, { v: 1 });
    };
    const clock = new FakeClock({ sleeps: "instant" });
    const r = runner({ url: `${base}/r`, results: { v: "v" } }, { clock });
    expect(await r.runRows(rows({}), ctx())).toEqual([{ i: 10, r: { v: 1 } }]);
    expect(clock.sleeps).toEqual([3000]);
  });

  it("honours Retry-After as an HTTP date, relative to the clock", async () => {
    const now = Date.parse("2030-01-01T00:00:00Z");
    let calls = 0;
    handler = (_req, _body, res) => {
      calls++;
      if (calls === 1) {
        json(res, 503, {}, { "retry-after": new Date(now + 7000).toUTCString() });
      } else json(res, 200, { v: 1 });
    };
    const clock = new FakeClock({ sleeps: "instant", start: now });
    const r = runner({ url: `${base}/r`, results: { v: "v" } }, { clock });
    await r.runRows(rows({}), ctx());
    expect(clock.sleeps).toEqual([7000]);
  });

  it("fails the row after the last attempt, naming the status and attempts", async () => {
    handler = (_req, _body, res) => json(res, 503, {});
    const r = runner({ url: `${base}/r`, results: { v: "v" }, retries: 4 });
    expect(await r.runRows(rows({}), ctx())).toEqual([{ i: 10, e: "HTTP 503 after 5 attempts" }]);
    expect(requests).toHaveLength(5);
  });

  it("retries network errors and reports them after the last attempt", async () => {
    // A port nobody listens on: bind one, then close it.
    const spare = createServer();
    await new Promise<void>((resolve) => spare.listen(0, "127.0.0.1", resolve));
    const port = (spare.address() as AddressInfo).port;
    await new Promise((resolve) => spare.close(resolve));

    const clock = new FakeClock({ sleeps: "instant" });
    const r = runner(
      { url: `http://127.0.0.1:${port}/x`, results: { v: "v" }, retries: 1 },
      { clock },
    );
    const [row] = await r.runRows(rows({}), ctx());
    expect(row?.e).toMatch(/ECONNREFUSED.*after 2 attempts$/);
    expect(clock.sleeps).toHaveLength(1);
  });

  it("times out a request that does not answer and retries it", async () => {
    let calls = 0;
    handler = (_req, _body, res) => {
      calls++;
      if (calls === 1) return; // never answers; the client gives up
      json(res, 200, { v: 2 });
    };
    const r = runner({ url: `${base}/slow`, results: { v: "v" }, timeoutMs: 200 });
    expect(await r.runRows(rows({}), ctx())).toEqual([{ i: 10, r: { v: 2 } }]);
    expect(calls).toBe(2);
  });
});

describe("http-enrich idempotency keys", () => {
  it("sends the same Idempotency-Key on a POST and its retry after a 503", async () => {
    let calls = 0;
    handler = (_req, _body, res) => {
      calls++;
      if (calls === 1) json(res, 503, {});
      else json(res, 200, { v: "ok" });
    };
    const r = runner(
      { url: `${base}/p`, method: "POST", body: "{}", results: { v: "v" } },
      { operationId: "op-1" },
    );
    expect(await r.runRows(rows({}), ctx())).toEqual([{ i: 10, r: { v: "ok" } }]);
    expect(requests.map((q) => q.headers["idempotency-key"])).toEqual(["op-1:10", "op-1:10"]);
  });

  it("gives each row its own key, under the header the options name", async () => {
    handler = (_req, _body, res) => json(res, 200, {});
    const r = runner(
      {
        url: `${base}/p`,
        method: "PUT",
        results: { v: "v" },
        idempotencyKey: { header: "X-Request-Key" },
      },
      { operationId: "op-2" },
    );
    await r.runRows(rows({}, {}), ctx());
    expect(requests.map((q) => q.headers["x-request-key"]).sort()).toEqual(["op-2:10", "op-2:11"]);
    expect(requests.every((q) => q.headers["idempotency-key"] === undefined)).toBe(true);
  });

  it("sends no key on GET, nor when the options turn it off", async () => {
    handler = (_req, _body, res) => json(res, 200, {});
    await runner({ url: `${base}/g`, results: { v: "v" } }, { operationId: "op" }).runRows(
      rows({}),
      ctx(),
    );
    await runner(
      { url: `${base}/p`, method: "POST", results: { v: "v" }, idempotencyKey: false },
      { operationId: "op" },
    ).runRows(rows({}), ctx());
    expect(requests).toHaveLength(2);
    expect(requests.every((q) => q.headers["idempotency-key"] === undefined)).toBe(true);
  });
});

describe("http-enrich concurrency and abort", () => {
  it("keeps at most `concurrency` requests in flight, across concurrent batches", async () => {
    handler = (_req, _body, res) => {
      setTimeout(() => json(res, 200, { v: 1 }), 15);
    };
    const r = runner({ url: `${base}/c/{n}`, results: { v: "v" }, concurrency: 4 });
    const many = (from: number) =>
      Array.from({ length: 20 }, (_, k) => ({ index: from + k, values: { n: from + k } }));
    let done = 0;
    const reported: number[] = [];
    const [a, b] = await Promise.all([
      r.runRows(many(0), {
        ...ctx(),
        onRowDone: (n) => (done += n),
        onResults: (rs) => reported.push(...rs.map((x) => x.i)),
      }),
      r.runRows(many(100), { ...ctx(), onRowDone: (n) => (done += n) }),
    ]);
    expect(a?.map((x) => x.i)).toEqual(many(0).map((x) => x.index));
    expect(b?.every((x) => x.r?.v === 1)).toBe(true);
    expect(done).toBe(40);
    // Each row reported once, as it finished.
    expect(reported.sort((x, y) => x - y)).toEqual(many(0).map((x) => x.index));
    expect(maxInFlight).toBe(4);
  });

  it("holds a bounded number of rows waiting however long the shard: abort listeners per signal stay near `concurrency`", async () => {
    // 2,000 queued rows each listening on the shard's signal made the bookkeeping quadratic.
    // Counted on every AbortSignal (the runner listens on a child of the shard's signal).
    const live = new Map<EventTarget, number>();
    let most = 0;
    const proto = AbortSignal.prototype as unknown as {
      addEventListener: EventTarget["addEventListener"];
      removeEventListener: EventTarget["removeEventListener"];
    };
    const add = EventTarget.prototype.addEventListener;
    const remove = EventTarget.prototype.removeEventListener;
    proto.addEventListener = function (this: EventTarget, type, ...rest) {
      if (type === "abort") {
        live.set(this, (live.get(this) ?? 0) + 1);
        most = Math.max(most, live.get(this) ?? 0);
      }
      return add.call(this, type, ...rest);
    };
    proto.removeEventListener = function (this: EventTarget, type, ...rest) {
      if (type === "abort") live.set(this, (live.get(this) ?? 1) - 1);
      return remove.call(this, type, ...rest);
    };
    try {
      handler = (_req, _body, res) => json(res, 200, { v: 1 });
      const r = runner({
        url: `${base}/w/{n}`,
        results: { v: "v" },
        concurrency: 8,
        adaptiveConcurrency: false,
      });
      const many = Array.from({ length: 2_000 }, (_, k) => ({ index: k, values: { n: k } }));
      const out = await r.runRows(many, ctx());
      expect(out.map((x) => x.i)).toEqual(many.map((x) => x.index));
      expect(out.every((x) => x.r?.v === 1)).toBe(true);
      expect(most).toBeGreaterThan(0);
      expect(most).toBeLessThanOrEqual(4 * 8);
    } finally {
      delete (proto as Partial<typeof proto>).addEventListener;
      delete (proto as Partial<typeof proto>).removeEventListener;
    }
  });

  it("without a budget, finds a source's in-flight limit by itself: 0 row errors, converged at or below it", async () => {
    const capacity = 6;
    let throttled = 0;
    let answered = 0;
    handler = (_req, _body, res) => {
      // inFlight counts this request too.
      if (inFlight > capacity) {
        throttled++;
        json(res, 429, {});
        return;
      }
      setTimeout(() => {
        answered++;
        json(res, 200, { v: 1 });
      }, 10);
    };
    // Real time: latency is one of the policy's inputs, and backoff must let the source drain.
    const r = runner(
      { url: `${base}/a/{n}`, results: { v: "v" }, concurrency: 64, backoffMs: 20 },
      { clock: systemClock, random: Math.random },
    );
    const many = Array.from({ length: 600 }, (_, k) => ({ index: k, values: { n: k } }));
    const out = await r.runRows(many, ctx());
    expect(out.filter((x) => x.e !== undefined)).toEqual([]);
    expect(answered).toBe(600);
    const [origin] = r.stats();
    // The sawtooth touches capacity + 1 at most, for one round, then backs off.
    expect(origin?.concurrency).toBeLessThanOrEqual(capacity + 1);
    expect(origin?.throttled).toBe(throttled);
    // Slow start overshoots once; after that the source is rarely pushed over.
    expect(throttled / (answered + throttled)).toBeLessThan(0.1);
  });

  it("keeps `concurrency` in flight when adaptive concurrency is off", async () => {
    handler = (_req, _body, res) => {
      setTimeout(() => json(res, 200, { v: 1 }), 200);
    };
    const r = runner({
      url: `${base}/f/{n}`,
      results: { v: "v" },
      concurrency: 30,
      adaptiveConcurrency: false,
    });
    await r.runRows(
      Array.from({ length: 60 }, (_, k) => ({ index: k, values: { n: k } })),
      ctx(),
    );
    expect(maxInFlight).toBe(30);
    expect(r.stats()[0]?.concurrency).toBe(30);
  });

  it("opens at most `concurrency` connections and keeps them for the next batches", async () => {
    handler = (_req, _body, res) => {
      setTimeout(() => json(res, 200, { v: 1 }), 20);
    };
    let opened = 0;
    const onConnection = () => {
      opened++;
    };
    server.on("connection", onConnection);
    try {
      const r = runner({
        url: `${base}/c/{n}`,
        results: { v: "v" },
        concurrency: 10,
        adaptiveConcurrency: false,
      });
      const batch = Array.from({ length: 50 }, (_, k) => ({ index: k, values: { n: k } }));
      const first = await r.runRows(batch, ctx());
      const afterFirst = opened;
      const second = await r.runRows(batch, ctx());
      expect([...first, ...second].every((x) => x.r?.v === 1)).toBe(true);
      expect(maxInFlight).toBe(10);
      expect(afterFirst).toBe(10);
      expect(opened).toBe(10);
    } finally {
      server.off("connection", onConnection);
    }
  });

  it("writes a lane's next request one event-loop turn after the answer on a used connection (a Pool took two)", async () => {
    handler = (_req, _body, res) => json(res, 200, { v: 1 });
    // Turns counted by an immediate that re-arms itself: it runs once per check phase.
    let turns = 0;
    let ticking = true;
    const tick = () => {
      turns++;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    const answeredAt: number[] = [];
    const writtenAt: number[] = [];
    const onTrailers = () => answeredAt.push(turns);
    const onSend = () => writtenAt.push(turns);
    diagnosticsChannel.subscribe("undici:request:trailers", onTrailers);
    diagnosticsChannel.subscribe("undici:client:sendHeaders", onSend);
    try {
      const r = runner({
        url: `${base}/t/{n}`,
        results: { v: "v" },
        concurrency: 1,
        adaptiveConcurrency: false,
      });
      const out = await r.runRows(
        Array.from({ length: 4 }, (_, k) => ({ index: k, values: { n: k } })),
        ctx(),
      );
      expect(out.every((x) => x.r?.v === 1)).toBe(true);
    } finally {
      ticking = false;
      diagnosticsChannel.unsubscribe("undici:request:trailers", onTrailers);
      diagnosticsChannel.unsubscribe("undici:client:sendHeaders", onSend);
    }
    expect(writtenAt).toHaveLength(4);
    // From the second answer on, the connection is a used one (undici checks it for stray bytes
    // first: that turn is kept); the Pool added a turn before it even took the request.
    for (let k = 1; k < 3; k++) expect(writtenAt[k + 1]! - answeredAt[k]!).toBe(1);
  });

  it("rejects with the signal's reason when the shard is aborted", async () => {
    handler = () => {}; // hang
    const controller = new AbortController();
    const r = runner({ url: `${base}/hang`, results: { v: "v" } });
    const running = r.runRows(rows({}, {}), { signal: controller.signal, logger: silentLogger() });
    setTimeout(() => controller.abort(new Error("shard stopped")), 50);
    await expect(running).rejects.toThrow("shard stopped");
  });
});

describe("http-enrich egress policy", () => {
  const port = () => Number(new URL(base).port);

  it("refuses a loopback address the policy does not allow: row error, no retry, no request", async () => {
    handler = (_req, _body, res) => json(res, 200, { v: 1 });
    const clock = new FakeClock({ sleeps: "instant" });
    const r = runner(
      { url: `${base}/x`, results: { v: "v" } },
      { clock, egress: parseEgressAllow("") },
    );
    const out = await r.runRows(rows({}, {}), ctx());
    expect(out.map((row) => row.e)).toEqual([
      `egress refused: 127.0.0.1:${port()} is a loopback address`,
      `egress refused: 127.0.0.1:${port()} is a loopback address`,
    ]);
    expect(requests).toHaveLength(0);
    expect(clock.sleeps).toHaveLength(0);
  });

  it("allows exactly the host:port named, not another port of the same address", async () => {
    handler = (_req, _body, res) => json(res, 200, { v: 1 });
    const allowed = runner(
      { url: `${base}/x`, results: { v: "v" } },
      { egress: parseEgressAllow(`127.0.0.1:${port()}`) },
    );
    expect(await allowed.runRows(rows({}), ctx())).toEqual([{ i: 10, r: { v: 1 } }]);
    const other = runner(
      { url: `${base}/x`, results: { v: "v" } },
      { egress: parseEgressAllow(`127.0.0.1:${port() === 1 ? 2 : port() - 1}`) },
    );
    const [row] = await other.runRows(rows({}), ctx());
    expect(row?.e).toBe(`egress refused: 127.0.0.1:${port()} is a loopback address`);
    expect(requests).toHaveLength(1);
  });

  it("checks the address a name resolves to at connect time (a rebinding name gets nowhere)", async () => {
    handler = (_req, _body, res) => json(res, 200, { v: 1 });
    const lookups: string[] = [];
    // The name is resolved once, by the connector, and the answer checked is the address the
    // socket opens to: there is no second resolution a rebinding DNS server could answer.
    const lookup: HostLookup = async (hostname) => {
      lookups.push(hostname);
      return [{ address: "127.0.0.1" }, { address: "::1" }];
    };
    const r = runner(
      { url: `http://rebind.test:${port()}/x`, results: { v: "v" } },
      { egress: parseEgressAllow(""), lookup },
    );
    const [row] = await r.runRows(rows({}), ctx());
    expect(row?.e).toBe(
      `egress refused: 127.0.0.1:${port()} is a loopback address (resolved from rebind.test)`,
    );
    expect(lookups).toEqual(["rebind.test"]);
    expect(requests).toHaveLength(0);
  });

  it("resolves a name once for the connections a pool opens together", async () => {
    handler = (_req, _body, res) => {
      setTimeout(() => json(res, 200, { v: 1 }), 20);
    };
    const lookups: string[] = [];
    const lookup: HostLookup = async (hostname) => {
      lookups.push(hostname);
      return [{ address: "127.0.0.1" }];
    };
    const r = runner(
      {
        url: `http://many.test:${port()}/m/{n}`,
        results: { v: "v" },
        concurrency: 20,
        adaptiveConcurrency: false,
      },
      { headers: ["n"], egress: parseEgressAllow("127.0.0.1"), lookup },
    );
    const out = await r.runRows(
      Array.from({ length: 20 }, (_, k) => ({ index: k, values: { n: k } })),
      ctx(),
    );
    expect(out.every((x) => x.r?.v === 1)).toBe(true);
    expect(maxInFlight).toBe(20);
    expect(lookups).toEqual(["many.test"]);
  });

  it("connects to the allowed address of a name that has several", async () => {
    handler = (_req, _body, res) => json(res, 200, { v: 2 });
    const lookup: HostLookup = async () => [{ address: "10.0.0.1" }, { address: "127.0.0.1" }];
    const r = runner(
      { url: `http://registry.test:${port()}/x`, results: { v: "v" } },
      { egress: parseEgressAllow("127.0.0.1"), lookup },
    );
    expect(await r.runRows(rows({}), ctx())).toEqual([{ i: 10, r: { v: 2 } }]);
    expect(requests[0]?.headers.host).toBe(`registry.test:${port()}`);
  });

  it("refuses odd IPv4 forms from row values after the URL parser normalised them", async () => {
    handler = (_req, _body, res) => json(res, 200, { v: 1 });
    const r = runner(
      { url: `http://{host}:${port()}/x`, results: { v: "v" } },
      { headers: ["host"], egress: parseEgressAllow("") },
    );
    const out = await r.runRows(
      rows({ host: "2130706433" }, { host: "0x7f.1" }, { host: "017700000001" }),
      ctx(),
    );
    for (const row of out) {
      expect(row.e).toBe(`egress refused: 127.0.0.1:${port()} is a loopback address`);
    }
    expect(requests).toHaveLength(0);
  });
});

describe("http-enrich response bounds", () => {
  it("fails a row whose body is over the size limit, without retrying", async () => {
    handler = (_req, _body, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(`{"v": "${"x".repeat(MAX_RESPONSE_BYTES)}"}`);
    };
    const clock = new FakeClock({ sleeps: "instant" });
    const r = runner({ url: `${base}/big`, results: { v: "v" } }, { clock });
    const [row] = await r.runRows(rows({}), ctx());
    expect(row?.e).toBe(`HTTP 200: response body over ${MAX_RESPONSE_BYTES} bytes`);
    expect(clock.sleeps).toHaveLength(0);
  });

  it("fails a row whose declared length is over the size limit, without reading it or retrying", async () => {
    let sent = 0;
    handler = (_req, _body, res) => {
      res.writeHead(200, {
        "content-type": "application/json",
        "content-length": String(MAX_RESPONSE_BYTES + 1),
      });
      // The first chunk only: the client must give up on the declared length alone.
      res.write("x".repeat(1024));
      sent++;
    };
    const clock = new FakeClock({ sleeps: "instant" });
    const r = runner({ url: `${base}/declared`, results: { v: "v" } }, { clock });
    const [row] = await r.runRows(rows({}), ctx());
    expect(row?.e).toBe(`HTTP 200: response body over ${MAX_RESPONSE_BYTES} bytes`);
    expect(sent).toBe(1);
    expect(clock.sleeps).toHaveLength(0);
  });

  it("reads a body of declared length whole, multi-byte characters included", async () => {
    handler = (_req, _body, res) => {
      const text = JSON.stringify({ v: "é€😀".repeat(5_000) });
      res.writeHead(200, {
        "content-type": "application/json",
        "content-length": String(Buffer.byteLength(text)),
      });
      res.end(text);
    };
    const r = runner({ url: `${base}/utf8`, results: { v: "v" } });
    const [row] = await r.runRows(rows({}), ctx());
    expect(row).toEqual({ i: 10, r: { v: "é€😀".repeat(5_000) } });
  });

  it("fails a row whose value does not fit in a cell rather than cutting it", async () => {
    handler = (_req, _body, res) =>
      json(res, 200, { v: "y".repeat(MAX_CELL_CHARS + 1), w: "z".repeat(MAX_CELL_CHARS) });
    const r = runner({ url: `${base}/long`, results: { w: "w", v: "v" } });
    const [row] = await r.runRows(rows({}), ctx());
    expect(row?.e).toBe(
      `result v: ${MAX_CELL_CHARS + 1} characters, over the ${MAX_CELL_CHARS} a cell holds`,
    );
    const fits = runner({ url: `${base}/long`, results: { w: "w" } });
    const [ok] = await fits.runRows(rows({}), ctx());
    expect(String(ok?.r?.w).length).toBe(MAX_CELL_CHARS);
  });
});

describe("helpers", () => {
  it("parseRetryAfter reads seconds and dates, ignores junk", () => {
    expect(parseRetryAfter("120", 0)).toBe(120_000);
    expect(parseRetryAfter(new Date(5000).toUTCString(), 1000)).toBe(4000);
    expect(parseRetryAfter(new Date(0).toUTCString(), 10_000)).toBe(0);
    expect(parseRetryAfter("soon", 0)).toBeUndefined();
    expect(parseRetryAfter(undefined, 0)).toBeUndefined();
  });

  it("readPath walks objects and arrays", () => {
    expect(readPath({ a: { b: [{ c: 3 }] } }, "a.b.0.c")).toBe(3);
    expect(readPath({ a: 1 }, "a.b")).toBeUndefined();
    expect(readPath(null, "a")).toBeUndefined();
  });
});
