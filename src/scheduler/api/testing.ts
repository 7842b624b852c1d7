/**
 * Test support for the scheduler's API and loop: a real local SQS/S3 server with its own bucket
 * and queues, multipart bodies for `inject()`, and small workbooks.
 */
import { Writable } from "node:stream";
import ExcelJS from "exceljs";
import type { FastifyInstance } from "fastify";
import { type LocalAwsServer, startLocalAwsServer } from "../../local/aws-server.ts";
import { type ProvisionedResources, provisionResources } from "../../local/provision.ts";
import { type AwsClients, createAwsClients } from "../../shared/aws.ts";
import { type Clock, systemClock } from "../../shared/clock.ts";
import { createLogger, type Logger, silentLogger } from "../../shared/logger.ts";
import { ObjectStore } from "../../shared/object-store.ts";
import type { ApiToken } from "../../shared/schemas/tokens.ts";
import { ShardQueue } from "../../shared/shard-queue.ts";
import { OperationService } from "../operations.ts";
import type { WorkbookLimits } from "../workbook/limits.ts";
import { buildApp } from "./app.ts";

export interface TestEnv {
  server: LocalAwsServer;
  clients: AwsClients;
  resources: ProvisionedResources;
  store: ObjectStore;
  queue: ShardQueue;
  close(): Promise<void>;
}

/** A local server with a bucket and queues named after `name` (unique per test file). */
export async function startTestEnv(name: string): Promise<TestEnv> {
  const server = await startLocalAwsServer({ port: 0 });
  const clients = createAwsClients({
    endpoint: server.endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
  });
  const resources = await provisionResources(clients, { bucket: name, prefix: name });
  const store = new ObjectStore({ s3: clients.s3 }, { bucket: resources.bucket });
  return {
    server,
    clients,
    resources,
    store,
    queue: new ShardQueue({ sqs: clients.sqs }),
    async close() {
      clients.destroy();
      await server.close();
    },
  };
}

export function testApp(
  env: TestEnv,
  options: {
    maxUploadBytes?: number;
    clock?: Clock;
    logger?: Logger;
    apiTokens?: readonly ApiToken[];
    workbookLimits?: WorkbookLimits;
  } = {},
): { app: FastifyInstance; operations: OperationService } {
  const logger = options.logger ?? silentLogger();
  const operations = new OperationService(
    {
      store: env.store,
      logger,
      clock: options.clock ?? systemClock,
    },
    options.workbookLimits ? { workbookLimits: options.workbookLimits } : {},
  );
  const app = buildApp({
    operations,
    logger,
    maxUploadBytes: options.maxUploadBytes ?? 1 << 20,
    ...(options.apiTokens ? { apiTokens: options.apiTokens } : {}),
  });
  return { app, operations };
}

export type FormPart =
  | { name: string; value: string }
  | { name: string; filename: string; type?: string; data: Uint8Array | string };

/** A multipart/form-data body with the parts in the given order, for `inject()`. */
export async function multipart(
  parts: FormPart[],
): Promise<{ payload: Buffer; headers: Record<string, string> }> {
  const form = new FormData();
  for (const part of parts) {
    if ("value" in part) form.append(part.name, part.value);
    else {
      const data = typeof part.data === "string" ? Buffer.from(part.data) : part.data;
      form.append(part.name, new Blob([data], { type: part.type ?? "" }), part.filename);
    }
  }
  const encoded = new Response(form);
  return {
    payload: Buffer.from(await encoded.arrayBuffer()),
    headers: { "content-type": encoded.headers.get("content-type")! },
  };
}

/** An xlsx workbook with one sheet holding `rows` (the first being the header). */
export async function xlsxOf(rows: unknown[][], sheet = "Sheet1"): Promise<Buffer> {
  const workbook = new ExcelJS.Workbook();
  const ws = workbook.addWorksheet(sheet);
  for (const row of rows) ws.addRow(row);
  return Buffer.from(await workbook.xlsx.writeBuffer());
}

export const transformSpec = (extra: Record<string, unknown> = {}) => ({
  name: "test op",
  task: { name: "transform", options: { module: "upper" } },
  shardSize: 2,
  ...extra,
});

/** Polls `check` until it returns a value (not undefined) or `timeoutMs` passes. */
export async function eventually<T>(
  check: () => Promise<T | undefined>,
  timeoutMs = 20_000, // waits for an event, not a speed
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** A logger whose JSON lines are collected in `lines` (parsed). */
export function capturingLogger(level = "info"): {
  logger: Logger;
  lines: Record<string, unknown>[];
} {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    level,
    destination: new Writable({
      write(chunk, _encoding, callback) {
        for (const line of String(chunk).split("\n")) if (line) lines.push(JSON.parse(line));
        callback();
      },
    }),
  });
  return { logger, lines };
}
