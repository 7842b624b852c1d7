/**
 * The request budget end to end on the local stack: four worker instances (child processes)
 * run an http-enrich operation whose spec sets `rateLimit` against a source that answers 429
 * above N requests a second. Every row succeeds, the source's busiest 5-second window stays
 * within 1.1 × 5N, and the status shows the source against the budget while it runs.
 */
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { OperationView } from "../../src/cli/api-client.ts";
import { waitForOperation } from "../../src/cli/wait.ts";
import { type HttpSource, startHttpSource } from "../support/http-source.ts";
import { startTestStack, type TestStack } from "../support/local-stack.ts";

const N = 30;
const ROWS = 360;

describe("request budget (local stack, four instances)", () => {
  let source: HttpSource;
  let host: string;
  let env: TestStack | undefined;
  const arrivals: number[] = [];
  const accepted: number[] = [];

  beforeAll(async () => {
    source = await startHttpSource((req, res) => {
      const now = Date.now();
      arrivals.push(now);
      while (accepted.length > 0 && accepted[0]! <= now - 1000) accepted.shift();
      if (accepted.length >= N) {
        res.writeHead(429, { "retry-after": "1" });
        res.end();
        return;
      }
      accepted.push(now);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ id: req.url?.split("/").pop() }));
    });
    host = source.host;
  });
  afterAll(async () => {
    await env?.close();
    await source?.close();
  }, 60_000);

  it("finishes with 0 row errors and keeps the source within 1.1 N a second over any 5 s", async () => {
    env = await startTestStack("budget", { workers: 4, egressAllow: [host] });
    const { dir, client } = env;
    const input = path.join(dir, "ids.csv");
    await writeFile(input, `id\n${Array.from({ length: ROWS }, (_, k) => `c${k}`).join("\n")}\n`);
    const { id } = await client.submit(input, {
      task: {
        name: "http-enrich",
        options: {
          url: `http://${host}/lookup/{id}`,
          results: { echoed: "id" },
          rateLimit: { requestsPerSecond: N },
        },
      },
      shardSize: 30,
    });

    // While it runs, the status shows the source against the budget.
    let seen: NonNullable<OperationView["source"]>[number] | undefined;
    // And once the workers have measured it, the instances the budget keeps busy.
    let measured: NonNullable<OperationView["source"]>[number] | undefined;
    const watching = (async () => {
      for (;;) {
        const view = await client.get(id);
        seen ??= view.source?.find((s) => s.workers === 4);
        measured ??= view.source?.find((s) => s.latencyMs != null && s.instances != null);
        if (view.finishedAt || (seen && measured)) return;
        await new Promise((r) => setTimeout(r, 500));
      }
    })();
    const view = await waitForOperation(client, id, { progress: false, intervalMs: 500 });
    await watching;

    expect(view.status).toBe("succeeded");
    expect(view.rows).toEqual({ total: ROWS, done: ROWS, failed: 0 });
    expect(seen).toMatchObject({ origin: `http://${host}`, budget: N, workers: 4 });
    // A loopback source answers in about a millisecond: one instance could carry the budget.
    expect(measured?.latencyMs).toEqual(expect.any(Number));
    expect(measured?.instances).toBe(1);

    const sorted = [...arrivals].sort((a, b) => a - b);
    let busiest = 0;
    for (let start = 0, end = 0; start < sorted.length; start++) {
      while (end < sorted.length && sorted[end]! < sorted[start]! + 5000) end++;
      busiest = Math.max(busiest, end - start);
    }
    console.info(
      `budget ${N}/s on the local stack: ${arrivals.length} requests, busiest 5 s ${busiest}`,
    );
    expect(busiest).toBeLessThanOrEqual(1.1 * 5 * N);
  }, 240_000);
});
