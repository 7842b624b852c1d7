/**
 * Test support for the scheduler's API: the app over a local store, multipart bodies for
 * `inject()`, a spec, and a logger whose lines a test can read.
 */
import { Writable } from "node:stream";
import type { FastifyInstance } from "fastify";
import { buildApp } from "../../src/scheduler/api/app.ts";
import { OperationService } from "../../src/scheduler/operations.ts";
import type { WorkbookLimits } from "../../src/scheduler/workbook/limits.ts";
import { type Clock, systemClock } from "../../src/shared/clock.ts";
import { createLogger, type Logger, silentLogger } from "../../src/shared/logger.ts";
import type { ApiToken } from "../../src/shared/schemas/tokens.ts";
import type { LocalAws } from "./local-aws.ts";

export function testApp(
  env: Pick<LocalAws, "store">,
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

export const transformSpec = (extra: Record<string, unknown> = {}) => ({
  name: "test op",
  task: { name: "transform", options: { module: "upper" } },
  shardSize: 2,
  ...extra,
});

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
