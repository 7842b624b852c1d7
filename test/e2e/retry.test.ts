/**
 * Retry of failed rows end to end on the local stack (issue 14 item 3): a local source that
 * answers 503 for a third of the rows while its "outage" lasts fails those rows; the operation
 * ends `succeeded-with-failures`. With the outage over, `POST /operations/:id/retry` (the call
 * `shardfleet retry` makes, with a changed task option) runs only the failed rows again: the
 * operation ends `succeeded` with 0 errors, every input row exactly once in its output, and the
 * source saw exactly one request for every row that had succeeded (never requested again) and
 * two for each row the outage failed. Then the same with the scheduler SIGKILLed and started
 * again right after the retry was accepted: nothing lost, nothing doubled in the output.
 * The first case submits an xlsx (its slices are sheet XML with shared strings, the retry's
 * slices NDJSON rows read from them), the second a CSV (NDJSON slices throughout).
 */
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ApiClient } from "../../src/cli/api-client.ts";
import { retryRequestOf } from "../../src/cli/commands/redrive.ts";
import { waitForOperation } from "../../src/cli/wait.ts";
import { type HttpSource, startHttpSource } from "../support/http-source.ts";
import { downloadRows, startTestStack, type TestStack } from "../support/local-stack.ts";
import { simpleXlsx } from "../support/workbooks.ts";

const ROWS = 200;
/** Rows the outage hits: 3 in 10. */
const hit = (k: number) => k % 10 < 3;
const failing = Array.from({ length: ROWS }, (_, k) => k).filter(hit);

describe("retry failed rows after a source outage (local stack)", () => {
  let source: HttpSource;
  let host: string;
  let env: TestStack;
  let outage = true;
  /** Answer time once the outage is over (to keep a retry running across a restart). */
  let delayMs = 0;
  /** Requests the source received, per row id. */
  const requests = new Map<string, number>();

  beforeAll(async () => {
    source = await startHttpSource((req, res) => {
      const rowId = decodeURIComponent(req.url?.split("/").pop() ?? "");
      requests.set(rowId, (requests.get(rowId) ?? 0) + 1);
      if (outage && hit(Number(rowId.slice(1)))) {
        res.writeHead(503);
        res.end();
        return;
      }
      setTimeout(() => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ id: rowId }));
      }, delayMs);
    });
    host = source.host;
    env = await startTestStack("retry", { workers: 2, egressAllow: [host] });
  }, 120_000);

  afterAll(async () => {
    await env?.close();
    await source?.close();
  }, 60_000);

  /** Submits ROWS rows named `{prefix}{k}` during an outage; resolves once it has ended. */
  async function submitDuringOutage(client: ApiClient, prefix: string, format: "csv" | "xlsx") {
    outage = true;
    delayMs = 0;
    const input = path.join(env.dir, `${prefix}.${format}`);
    const names = Array.from({ length: ROWS }, (_, k) => `${prefix}${k}`);
    await writeFile(
      input,
      format === "csv"
        ? `id\n${names.join("\n")}\n`
        : await simpleXlsx([["id"], ...names.map((n) => [n])]),
    );
    const { id } = await client.submit(input, {
      task: {
        name: "http-enrich",
        // No retries within the run: a row the outage hits fails at its first request.
        options: {
          url: `http://${host}/lookup/{id}`,
          results: { echoed: "id" },
          retries: 0,
          adaptiveConcurrency: false,
          concurrency: 20,
        },
      },
      shardSize: 20,
      toleratedFailurePercent: 50,
    });

    const first = await waitForOperation(client, id, { progress: false, intervalMs: 500 });
    expect(first.status).toBe("succeeded-with-failures");
    expect(first.result).toMatchObject({ rows: ROWS, errorRows: failing.length });
    expect(names.map((n) => requests.get(n))).toEqual(names.map(() => 1));
    return { id, names };
  }

  /** The output after the retry: every row once, in order, with its result and no error. */
  async function expectEveryRowOnce(client: ApiClient, id: string, names: string[]) {
    const rows = await downloadRows(client, id);
    expect(rows[0]).toEqual(["id", "echoed", "error"]);
    const data = rows.slice(1);
    expect(data.map((r) => r[0])).toEqual(names);
    expect(data.every((r) => r[1] === r[0] && (r[2] === undefined || r[2] === null))).toBe(true);
  }

  it("runs only the failed rows of an xlsx again: 0 errors, every row once, finished rows not requested again", async () => {
    const { client } = env;
    const { id, names } = await submitDuringOutage(client, "c", "xlsx");

    // The outage is over; retried with a changed option (what `shardfleet retry --set` sends).
    outage = false;
    const accepted = await client.retry(id, retryRequestOf(["retries=2", "backoffMs=50"]));
    expect(accepted.status).toBe("running");
    expect(accepted.retries?.at(-1)).toMatchObject({ number: 1, endedAt: null });
    const view = await waitForOperation(client, id, { progress: false, intervalMs: 500 });

    expect(view.status).toBe("succeeded");
    expect(view.rows).toEqual({ total: ROWS, done: ROWS, failed: 0 });
    expect(view.result).toMatchObject({ rows: ROWS, errorRows: 0 });
    expect(view.retries).toHaveLength(1);
    expect(view.retries?.[0]).toMatchObject({
      number: 1,
      rows: failing.length,
      status: "succeeded",
      errorRows: 0,
      options: { retries: 2, backoffMs: 50, url: `http://${host}/lookup/{id}` },
    });

    await expectEveryRowOnce(client, id, names);

    // Counted at the source: rows that had succeeded were not requested again.
    for (let k = 0; k < ROWS; k++) {
      expect({ row: k, requests: requests.get(`c${k}`) }).toEqual({
        row: k,
        requests: hit(k) ? 2 : 1,
      });
    }

    // The cost report is rebuilt over every attempt (the first run's and the retry's).
    const cost = await client.cost(id);
    expect(cost.operationId).toBe(id);

    // A finished operation with no error rows is not retried again.
    await expect(client.retry(id)).rejects.toThrow(/409.*succeeded/);
  }, 300_000);

  it("a scheduler SIGKILLed right after the retry was accepted: its successor finishes it, every row once", async () => {
    const { stack, client } = env;
    const { id, names } = await submitDuringOutage(client, "d", "csv");
    outage = false;
    delayMs = 150;
    const accepted = await client.retry(id, { options: { retries: 2 } });
    expect(accepted.status).toBe("running");
    // Killed while it plans or runs the retry; the next one takes over once the lease expires.
    await stack.restartScheduler();
    const view = await waitForOperation(client, id, { progress: false, intervalMs: 500 });
    expect(view.status).toBe("succeeded");
    expect(view.result).toMatchObject({ rows: ROWS, errorRows: 0 });
    expect(view.retries).toHaveLength(1);
    expect(view.retries?.[0]).toMatchObject({
      number: 1,
      rows: failing.length,
      status: "succeeded",
    });
    await expectEveryRowOnce(client, id, names);
    // Rows that had succeeded were never requested again; a failed row at least once more (a
    // message the successor sent again may run twice before either copy commits).
    for (let k = 0; k < ROWS; k++) {
      const n = requests.get(`d${k}`) ?? 0;
      if (hit(k)) expect(n).toBeGreaterThanOrEqual(2);
      else expect({ row: k, requests: n }).toEqual({ row: k, requests: 1 });
    }
  }, 300_000);
});
