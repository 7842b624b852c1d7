/**
 * Test helpers for worker integration tests: a local SQS/S3 server with fresh resources, and
 * operations written by hand (manifest + shard slices) the way the splitter writes them.
 */
import { readFile } from "node:fs/promises";
import { GetQueueAttributesCommand } from "@aws-sdk/client-sqs";
import { type LocalAwsServer, startLocalAwsServer } from "../local/aws-server.ts";
import type { ComponentProcess } from "../local/processes.ts";
import { type ProvisionedResources, provisionResources } from "../local/provision.ts";
import { type AwsClients, createAwsClients } from "../shared/aws.ts";
import { keys } from "../shared/keys.ts";
import { ObjectStore } from "../shared/object-store.ts";
import { type Cell, encodeCell, type ResultRow } from "../shared/schemas/cells.ts";
import { type Manifest, manifestSchema } from "../shared/schemas/operation.ts";
import type { ShardMessage } from "../shared/schemas/shard.ts";
import { type ReceivedMessage, ShardQueue } from "../shared/shard-queue.ts";
import type { ShardHandler } from "./consumer.ts";
import { childSignal, type TaskRow, type TaskRunner } from "./tasks/task.ts";

export interface LocalAws {
  server: LocalAwsServer;
  clients: AwsClients;
  resources: ProvisionedResources;
  store: ObjectStore;
  queue: ShardQueue;
  close(): Promise<void>;
}

export async function startLocalAws(
  name: string,
  visibilityTimeoutSeconds = 30,
): Promise<LocalAws> {
  const server = await startLocalAwsServer({ port: 0 });
  const clients = createAwsClients({
    endpoint: server.endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
  });
  const resources = await provisionResources(
    clients,
    { bucket: `${name}-bucket`, prefix: name },
    { visibilityTimeoutSeconds },
  );
  return {
    server,
    clients,
    resources,
    store: new ObjectStore({ s3: clients.s3 }, { bucket: resources.bucket }),
    queue: new ShardQueue({ sqs: clients.sqs }),
    async close() {
      clients.destroy();
      await server.close();
    },
  };
}

let queueSets = 0;

/**
 * A fresh work queue and DLQ on the same server. Tests that stop a consumer need one each: an
 * aborted long poll stays open on the server for the rest of its wait, and would swallow the
 * next test's messages for a visibility timeout (as it would on SQS).
 */
export async function freshQueues(
  aws: LocalAws,
  visibilityTimeoutSeconds = 30,
): Promise<ProvisionedResources["queues"]> {
  const name = `q${++queueSets}-${process.pid}`;
  const out = await provisionResources(
    aws.clients,
    { bucket: `${name}-unused`, prefix: name },
    { visibilityTimeoutSeconds },
  );
  return out.queues;
}

/** The environment a worker process needs to reach `aws` (queues and the rest are the caller's). */
export function localAwsEnv(aws: LocalAws): Record<string, string> {
  return {
    AWS_ENDPOINT_URL: aws.server.endpoint,
    AWS_REGION: "us-east-1",
    AWS_ACCESS_KEY_ID: "test",
    AWS_SECRET_ACCESS_KEY: "test",
    SHARDFLEET_BUCKET: aws.resources.bucket,
  };
}

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

/** Writes a manifest for `task` over `headers` (`spec` adds e.g. checkpoint settings). */
export async function writeManifest(
  store: ObjectStore,
  operationId: string,
  headers: string[],
  task: { name: string; options: Record<string, unknown> },
  spec: Partial<Pick<Manifest["spec"], "checkpoint" | "maxErrorAttempts">> = {},
): Promise<Manifest> {
  const now = new Date().toISOString();
  const manifest: Manifest = {
    v: 1,
    id: operationId,
    status: "running",
    spec: { version: 1, task, shardSize: 500, toleratedFailurePercent: 100, ...spec },
    input: { key: keys.input(operationId, "csv"), filename: "in.csv", format: "csv", bytes: 1 },
    headers,
    createdAt: now,
    updatedAt: now,
  };
  await store.putJson(keys.manifest(operationId), manifestSchema, manifest);
  return manifest;
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

/** Polls `check` every 50 ms until it returns a value other than undefined. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined>,
  // Generous: it waits for an event, not a speed; a loaded CI machine must not fail it.
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** At most one message receivable on `queueUrl` within a 1 s poll, taken for 30 s. */
export function receiveOne(queue: ShardQueue, queueUrl: string): Promise<ReceivedMessage[]> {
  return queue.receive(queueUrl, { max: 1, waitSeconds: 1, visibilityTimeout: 30 });
}

/** Waits until a message is receivable on `queueUrl` and takes it for 30 s. */
export async function waitForMessage(
  what: string,
  queue: ShardQueue,
  queueUrl: string,
  timeoutMs?: number,
): Promise<ReceivedMessage> {
  const [message] = await waitFor(
    what,
    async () => {
      const got = await receiveOne(queue, queueUrl);
      return got.length > 0 ? got : undefined;
    },
    timeoutMs,
  );
  return message!;
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

/** Visible plus in-flight messages on a queue. */
export async function messagesOn(aws: LocalAws, queueUrl: string): Promise<number> {
  const out = await aws.clients.sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    }),
  );
  return (
    Number(out.Attributes?.ApproximateNumberOfMessages ?? 0) +
    Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0)
  );
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
