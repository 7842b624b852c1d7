import { EventSource } from "eventsource";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalAws, startLocalAws } from "../../../test/support/local-aws.ts";
import { splitManifest } from "../../../test/support/manifests.ts";
import { seedManifest } from "../../../test/support/seed-manifest.ts";
import { systemClock } from "../../shared/clock.ts";
import { keys } from "../../shared/keys.ts";
import { silentLogger } from "../../shared/logger.ts";
import { budgetPeerSchema } from "../../shared/schemas/budget.ts";
import { type FleetEvent, fleetRecordSchema } from "../../shared/schemas/fleet.ts";
import type { ApiToken } from "../../shared/schemas/tokens.ts";
import { newOperationId, OperationService } from "../operations.ts";
import { buildApp } from "./app.ts";

let env: LocalAws;
beforeAll(async () => {
  env = await startLocalAws("events-routes");
});
afterAll(async () => {
  await env?.close();
});

/** A scheduler's API on a free port, reading the records every 50 ms. */
async function startApi(apiTokens?: ApiToken[]): Promise<{ app: FastifyInstance; url: string }> {
  const logger = silentLogger();
  const operations = new OperationService({ store: env.store, logger, clock: systemClock });
  const app = buildApp({
    operations,
    logger,
    maxUploadBytes: 1 << 20,
    events: { pollMs: 50, heartbeatMs: 120 },
    ...(apiTokens ? { apiTokens } : {}),
  });
  const address = await app.listen({ host: "127.0.0.1", port: 0 });
  return { app, url: address };
}

function fleetEvent(n: number): FleetEvent {
  return { at: new Date().toISOString(), kind: "launch-requested", message: `launch ${n}` };
}

async function writeFleet(id: string, events: FleetEvent[]): Promise<void> {
  await env.store.putJson(keys.fleet(id), fleetRecordSchema, {
    v: 1,
    operationId: id,
    instances: [],
    events,
    droppedEvents: 0,
    updatedAt: new Date().toISOString(),
  });
}

type Received = { id: string; type: string; data: Record<string, unknown> };

/** Opens an EventSource (optionally resuming after `lastId`) and collects until `until` holds. */
function collect(
  url: string,
  until: (got: Received[]) => boolean,
  lastId?: string,
): Promise<Received[]> {
  return new Promise((resolve, reject) => {
    const got: Received[] = [];
    const es = new EventSource(url, {
      fetch: (input, init) =>
        fetch(input, {
          ...init,
          headers: { ...init?.headers, ...(lastId ? { "last-event-id": lastId } : {}) },
        }),
    });
    const on = (type: string) => (e: MessageEvent) => {
      got.push({ id: e.lastEventId, type, data: JSON.parse(e.data as string) });
      if (until(got)) {
        es.close();
        resolve(got);
      }
    };
    for (const type of ["status", "progress", "fleet", "cost", "source"])
      es.addEventListener(type, on(type));
    es.onerror = (e) => {
      if (es.readyState === EventSource.CLOSED)
        reject(new Error(`events stream failed: ${e.message}`));
    };
  });
}

describe("GET /operations/:id/events", () => {
  it("a client that disconnects and resumes with Last-Event-ID, across a scheduler restart, misses no event and sees none twice", async () => {
    const id = newOperationId(Date.now());
    const now = new Date().toISOString();
    const clock = { store: env.store, clock: systemClock };
    await seedManifest(clock, splitManifest(id, 3, now, "running"));
    await writeFleet(id, [fleetEvent(0), fleetEvent(1)]);

    const first = await startApi();
    const before = await collect(
      `${first.url}/operations/${id}/events`,
      (got) =>
        got.some((g) => g.type === "status") && got.filter((g) => g.type === "fleet").length === 2,
    );
    await first.app.close();
    expect(before.map((g) => g.type)).toEqual(["fleet", "fleet", "progress", "status"]);
    expect(before.at(-1)?.data).toMatchObject({ status: "running" });

    // While nobody listens, and no scheduler runs: more fleet events, then the operation ends.
    await writeFleet(id, [0, 1, 2, 3, 4].map(fleetEvent));
    const finished = new Date().toISOString();
    await seedManifest(clock, {
      ...splitManifest(id, 3, now, "succeeded"),
      finishedAt: finished,
    });

    const second = await startApi();
    const lastId = before.at(-1)?.id;
    expect(lastId).toBeTruthy();
    const after = await collect(
      `${second.url}/operations/${id}/events`,
      (got) => got.some((g) => g.type === "status"),
      lastId,
    );
    await second.app.close();
    const fleetSeqs = [...before, ...after]
      .filter((g) => g.type === "fleet")
      .map((g) => g.data.seq);
    expect(fleetSeqs).toEqual([0, 1, 2, 3, 4]);
    expect(after.filter((g) => g.type === "fleet").map((g) => g.data.message)).toEqual([
      "launch 2",
      "launch 3",
      "launch 4",
    ]);
    expect(after.at(-1)).toMatchObject({
      type: "status",
      data: { status: "succeeded", finishedAt: finished },
    });
    // Every id is unique: a client keeping the last one resumes at the right place.
    const ids = [...before, ...after].map((g) => g.id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("sends what an http-enrich operation's source sees as `source` events, again when it changes (no budget needed)", async () => {
    const id = newOperationId(Date.now());
    const now = new Date().toISOString();
    const m = splitManifest(id, 3, now, "running");
    await seedManifest(
      { store: env.store, clock: systemClock },
      {
        ...m,
        spec: {
          ...m.spec,
          task: {
            name: "http-enrich",
            options: { url: "https://s.example/{n}", results: { v: "v" } },
          },
        },
      },
    );
    const peer = (concurrency: number) =>
      env.store.putJson(keys.budgetPeer(id, "local-001", "m1"), budgetPeerSchema, {
        v: 1,
        instanceId: "local-001",
        renewedAt: new Date().toISOString(),
        peers: 0,
        origins: [
          {
            origin: "https://s.example",
            concurrency,
            inFlight: 4,
            requestsPerSecond: 30,
            latencyMs: 80,
            requests: 300,
            throttled: 2,
            failed: 0,
          },
        ],
      });
    await peer(16);
    const api = await startApi();
    const url = `${api.url}/operations/${id}/events`;
    let changed = false;
    const got = await collect(url, (events) => {
      const sources = events.filter((e) => e.type === "source");
      if (sources.length === 1 && !changed) {
        changed = true;
        void peer(24);
      }
      return sources.length === 2;
    });
    await api.app.close();
    const sources = got.filter((e) => e.type === "source").map((e) => e.data.origins);
    expect(sources).toEqual([
      [
        expect.objectContaining({
          origin: "https://s.example",
          requestsPerSecond: 30,
          budget: null,
          concurrency: 16,
          throttled: 2,
          latencyMs: 80,
        }),
      ],
      [expect.objectContaining({ concurrency: 24 })],
    ]);
  });

  it("sends heartbeat comments while nothing changes, and ends after the final status", async () => {
    const id = newOperationId(Date.now());
    const now = new Date().toISOString();
    await seedManifest(
      { store: env.store, clock: systemClock },
      splitManifest(id, 1, now, "running"),
    );
    const api = await startApi();
    const res = await fetch(`${api.url}/operations/${id}/events`);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    while (!text.includes(": heartbeat")) {
      const { value, done } = await reader.read();
      if (done) throw new Error("stream ended early");
      text += decoder.decode(value, { stream: true });
    }
    await seedManifest(
      { store: env.store, clock: systemClock },
      { ...splitManifest(id, 1, now, "failed"), error: { code: "X", message: "it broke" } },
    );
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    expect(text).toMatch(/event: status\ndata: \{"status":"failed"[^\n]*"it broke"/);
    await api.app.close();
  });

  it("is tenant-scoped: another tenant's id is 404, no stream", async () => {
    const token = "7c".repeat(32);
    const id = newOperationId(Date.now());
    await seedManifest(
      { store: env.store, clock: systemClock },
      { ...splitManifest(id, 1, new Date().toISOString(), "running"), tenant: "other" },
    );
    const { createHash } = await import("node:crypto");
    const api = await startApi([
      {
        tenant: "acme",
        role: "member",
        sha256: createHash("sha256").update(token).digest("hex"),
        line: 1,
        caps: {},
      },
    ]);
    const res = await fetch(`${api.url}/operations/${id}/events`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("NOT_FOUND");
    await api.app.close();
  });

  it("a scheduler that closes ends its open streams instead of waiting for the watchers", async () => {
    const id = newOperationId(Date.now());
    await seedManifest(
      { store: env.store, clock: systemClock },
      splitManifest(id, 1, new Date().toISOString(), "running"),
    );
    const api = await startApi();
    const res = await fetch(`${api.url}/operations/${id}/events`);
    const reader = res.body!.getReader();
    await reader.read();
    await api.app.close();
    for (;;) if ((await reader.read()).done) break;
  });
});
