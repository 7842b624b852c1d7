/**
 * Test support for worker tests: component logs, shard slices written the way the splitter
 * writes them, and shard handlers and task runners the test drives.
 */
import { readFile } from "node:fs/promises";
import type { ComponentProcess } from "../../src/local/processes.ts";
import { keys } from "../../src/shared/keys.ts";
import type { ObjectStore } from "../../src/shared/object-store.ts";
import { type Cell, encodeCell, type ResultRow } from "../../src/shared/schemas/cells.ts";
import type { ShardMessage } from "../../src/shared/schemas/shard.ts";
import type { ShardHandler } from "../../src/worker/consumer.ts";
import { childSignal, type TaskRow, type TaskRunner } from "../../src/worker/tasks/task.ts";

/** The JSON lines a component process has logged so far (none if it has no log yet). */
export async function logLines(
  component: ComponentProcess,
): Promise<Array<Record<string, unknown>>> {
  const text = await readFile(component.logFile!, "utf8").catch(() => "");
  return text
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Writes one shard slice (rows `start…`) and returns its queue message. */
export async function writeSlice(
  store: ObjectStore,
  operationId: string,
  shardId: string,
  start: number,
  rows: Cell[][],
): Promise<ShardMessage> {
  const body = rows
    .map((cells, k) => `${JSON.stringify({ i: start + k, c: cells.map(encodeCell) })}\n`)
    .join("");
  await store.putText(keys.shardInput(operationId, shardId), body, "application/x-ndjson");
  return { v: 1, operationId, shardId, start, end: start + rows.length };
}

/** A shard handler that runs until its signal aborts, then rejects with the reason it keeps. */
export function untilAbortHandler(): ShardHandler & { reason?: unknown } {
  const handler: ShardHandler & { reason?: unknown } = {
    process: (_body, { signal }) =>
      new Promise((_resolve, reject) => {
        signal.addEventListener("abort", () => {
          handler.reason = signal.reason;
          reject(signal.reason);
        });
      }),
  };
  return handler;
}

/** A TaskRunner driven by the test: counts what it runs, reports rows as they finish. */
export interface ScriptedRunner extends TaskRunner {
  /** Row indices in the order they finished (a row run twice appears twice). */
  readonly ran: number[];
  /** The signal of each runRows call. */
  readonly signals: AbortSignal[];
}

/**
 * Runs every row at once; row `i` finishes after `wait(i)`: a number of ms, or a promise (a row
 * the test releases). Results are `{ v: i * 2 }`, or `result(i)`. Honours the abort signal.
 */
export function scriptedRunner(
  wait: (index: number) => number | Promise<unknown>,
  result: (index: number) => ResultRow = (i) => ({ i, r: { v: i * 2 } }),
): ScriptedRunner {
  const ran: number[] = [];
  const signals: AbortSignal[] = [];
  const untilDone = (what: number | Promise<unknown>, signal: AbortSignal) =>
    new Promise<void>((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal.reason);
      };
      const done = () => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
      const timer = typeof what === "number" ? setTimeout(done, what) : undefined;
      if (typeof what !== "number") void what.then(done, done);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  return {
    columns: ["v"],
    ran,
    signals,
    async runRows(rows: TaskRow[], ctx) {
      signals.push(ctx.signal);
      // One listener per row in flight: a child signal that allows them (as real runners do).
      const { signal, dispose } = childSignal(ctx.signal);
      try {
        return await Promise.all(
          rows.map(async (row) => {
            await untilDone(wait(row.index), signal);
            ran.push(row.index);
            const out = result(row.index);
            ctx.onRowDone?.(1);
            ctx.onResults?.([out]);
            return out;
          }),
        );
      } finally {
        dispose();
      }
    },
    close: async () => {},
  };
}

/** Rows `[0, n)` of one text column, as `writeSlice` takes them. */
export function textRows(n: number): Cell[][] {
  return Array.from({ length: n }, (_, k) => [`row ${k}`]);
}
