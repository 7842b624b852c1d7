/**
 * The interruption watcher against the local IMDSv2 peer (src/local/imds.ts): real HTTP, real
 * tokens. Error paths use injected IMDS failures (`failNext`).
 */
import { createServer } from "node:net";
import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { FakeClock } from "../../test/support/fake-clock.ts";
import { waitFor } from "../../test/support/wait.ts";
import { type LocalImds, startLocalImds } from "../local/imds.ts";
import { createLogger, silentLogger } from "../shared/logger.ts";
import { InterruptionWatcher, type InterruptionWatcherOptions } from "./interruption-watcher.ts";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function imds(): Promise<LocalImds> {
  const server = await startLocalImds({ instanceId: "i-watch", market: "spot" });
  cleanups.push(() => server.close());
  return server;
}

/** A logger whose lines land in `lines` (parsed). */
function capturingLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n").filter(Boolean)) {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { logger: createLogger({ level: "debug", destination }), lines };
}

function watcher(
  endpoint: string,
  options: Omit<InterruptionWatcherOptions, "endpoint"> = {},
  deps: Partial<ConstructorParameters<typeof InterruptionWatcher>[0]> = {},
) {
  const w = new InterruptionWatcher(
    { logger: silentLogger(), ...deps },
    { endpoint, pollIntervalMs: 20, ...options },
  );
  cleanups.push(() => w.close());
  return w;
}

const hits = (server: LocalImds, path: string) => server.hits.get(path) ?? 0;
const ACTION = "/latest/meta-data/spot/instance-action";
const REBALANCE = "/latest/meta-data/events/recommendations/rebalance";
const TOKEN = "/latest/api/token";

/** A loopback port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe("InterruptionWatcher (local IMDS)", () => {
  it("polls with one token, sees no notice on 404, then resolves on a notice and stops polling", async () => {
    const server = await imds();
    const w = watcher(server.endpoint);
    expect(await w.start()).toBe(true);
    expect(w.state).toBe("watching");
    let noticed = false;
    void w.notice.then(() => {
      noticed = true;
    });
    await waitFor("a few polls", async () => (hits(server, ACTION) >= 3 ? true : undefined));
    expect(noticed).toBe(false);
    expect(hits(server, TOKEN)).toBe(1);

    const at = new Date(Date.now() + 120_000);
    server.noticeInterruption(at);
    const notice = await w.notice;
    expect(notice).toMatchObject({
      kind: "interruption",
      action: "terminate",
      time: at.toISOString().replace(/\.\d{3}Z$/, "Z"),
    });
    expect(w.state).toBe("noticed");
    const polls = hits(server, ACTION);
    await new Promise((r) => setTimeout(r, 100));
    expect(hits(server, ACTION)).toBe(polls);
  });

  it("ignores a rebalance recommendation unless asked to drain on it", async () => {
    const server = await imds();
    server.recommendRebalance();
    const ignoring = watcher(server.endpoint);
    await ignoring.start();
    await waitFor("a few polls", async () => (hits(server, ACTION) >= 3 ? true : undefined));
    expect(hits(server, REBALANCE)).toBe(0);
    expect(ignoring.state).toBe("watching");

    const draining = watcher(server.endpoint, { drainOnRebalance: true });
    await draining.start();
    expect(await draining.notice).toMatchObject({ kind: "rebalance" });
  });

  it("refreshes the token before its TTL ends (fake clock)", async () => {
    const server = await imds();
    const clock = new FakeClock();
    const w = watcher(server.endpoint, { pollIntervalMs: 1000, tokenTtlSeconds: 4 }, { clock });
    await w.start();
    const pollsAfter = async (n: number) =>
      waitFor(`poll ${n}`, async () => (hits(server, ACTION) >= n ? true : undefined));
    await pollsAfter(1);
    // TTL 4 s, refreshed a quarter early: polls at 0, 1, 2 s use the first token; 3 s a new one.
    for (let n = 2; n <= 3; n++) {
      await clock.advance(1000);
      await pollsAfter(n);
    }
    expect(hits(server, TOKEN)).toBe(1);
    await clock.advance(1000);
    await pollsAfter(4);
    expect(hits(server, TOKEN)).toBe(2);
  });

  it("with injected IMDS failures: a 401 gets a new token at once, 5xx polls are retried, one warning", async () => {
    const server = await imds();
    const { logger, lines } = capturingLogger();
    const w = watcher(server.endpoint, {}, { logger });
    await w.start();
    await waitFor("a poll", async () => (hits(server, ACTION) >= 1 ? true : undefined));

    server.failNext(401, 1);
    await waitFor("a second token", async () => (hits(server, TOKEN) >= 2 ? true : undefined));
    expect(lines.filter((l) => l.level === 40)).toHaveLength(0);

    server.failNext(503, 4);
    const before = hits(server, ACTION);
    await waitFor("polls past the failures", async () =>
      hits(server, ACTION) >= before + 5 ? true : undefined,
    );
    const warnings = lines.filter((l) => l.level === 40).map((l) => l.msg);
    expect(warnings).toEqual(["cannot read the instance metadata service; retrying each poll"]);
    await waitFor("the recovery line", async () =>
      lines.some((l) => l.msg === "instance metadata service answers again") ? true : undefined,
    );

    server.noticeInterruption(new Date(Date.now() + 120_000));
    expect(await w.notice).toMatchObject({ kind: "interruption" });
  });

  it("with injected IMDS failures at start: a 5xx token answer still starts watching", async () => {
    const server = await imds();
    server.failNext(500, 1);
    const w = watcher(server.endpoint);
    expect(await w.start()).toBe(true);
    server.noticeInterruption(new Date(Date.now() + 120_000));
    expect(await w.notice).toMatchObject({ kind: "interruption" });
  });

  it("with injected IMDS failures at start: a 403 (IMDS turned off) disables it", async () => {
    const server = await imds();
    server.failNext(403, 1);
    const w = watcher(server.endpoint);
    expect(await w.start()).toBe(false);
    expect(w.state).toBe("disabled");
  });

  it("disables itself with one warning when nothing answers at the endpoint", async () => {
    const { logger, lines } = capturingLogger();
    const w = watcher(`http://127.0.0.1:${await closedPort()}/`, {}, { logger });
    expect(await w.start()).toBe(false);
    expect(w.state).toBe("disabled");
    await new Promise((r) => setTimeout(r, 100));
    expect(lines.filter((l) => l.level === 40).map((l) => l.msg)).toEqual([
      "instance metadata service unreachable; spot interruption notices will not be seen",
    ]);
  });
});
