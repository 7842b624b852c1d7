/**
 * `GET /operations/:id/events`: the operation's progress, status changes, fleet events and (at
 * the end) cost as server-sent events, resumable with `Last-Event-ID` (see `event-stream.ts`
 * for the ids). The stream reads the records every `pollMs`, sends a heartbeat comment when it
 * has been silent for `heartbeatMs`, and ends after the final status (and the cost report's
 * totals, when there is one). Tenant-scoped: another tenant's id is 404 before anything streams.
 */
import type { FastifyPluginAsync } from "fastify";
import { NotReadyError } from "../../shared/errors.ts";
import { TERMINAL_STATUSES } from "../../shared/schemas/operation.ts";
import type { CostService } from "../cost/cost-service.ts";
import type { OperationService } from "../operations.ts";
import { eventsSince, parsePosition, sourceEventSince, sseFrame } from "./event-stream.ts";
import { errorBodySchema, operationParamsSchema } from "./schemas.ts";

export interface EventRoutesOptions {
  operations: OperationService;
  /** For the final `cost` event. @default none (no cost event) */
  cost?: CostService;
  /** How often the records are read. @default 1000 */
  pollMs?: number;
  /** A comment line after this much silence keeps proxies and the socket timeout at bay. @default 15000 */
  heartbeatMs?: number;
}

export const eventRoutes: FastifyPluginAsync<EventRoutesOptions> = async (app, opts) => {
  const pollMs = opts.pollMs ?? 1_000;
  const heartbeatMs = opts.heartbeatMs ?? 15_000;
  const errors = { 400: errorBodySchema, 404: errorBodySchema };
  // Open streams end when the server closes (else close() would wait for every watcher).
  const open = new Set<AbortController>();
  app.addHook("preClose", async () => {
    for (const abort of open) abort.abort();
  });

  app.get<{ Params: { id: string } }>(
    "/operations/:id/events",
    {
      schema: {
        params: operationParamsSchema,
        querystring: {
          type: "object",
          properties: {
            ticket: {
              type: "string",
              description:
                "instead of the bearer token (EventSource sends no headers): a ticket from POST /operations/:id/events/ticket",
            },
          },
        },
        headers: {
          type: "object",
          properties: {
            "last-event-id": {
              type: "string",
              description: "the id of the last event received: the stream resumes after it",
            },
          },
        },
        response: {
          200: {
            description:
              "text/event-stream: events `status`, `progress`, `fleet`, `cost`, `source` (data: JSON, shapes in src/shared/contracts/events.ts), heartbeat comments; ends after the final status",
            content: { "text/event-stream": { schema: { type: "string" } } },
          },
          ...errors,
        },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const viewer = request.principal;
      // Before anything streams: 400 / 404 (another tenant's id too) go through the error handler.
      let snapshot = await opts.operations.getWithFleet(id, undefined, viewer);
      const header = request.headers["last-event-id"];
      let position = parsePosition(typeof header === "string" ? header : undefined);
      const abort = new AbortController();
      open.add(abort);
      reply.raw.on("close", () => abort.abort());
      // The reply is ours from here: keep the headers set so far (security headers).
      reply.hijack();
      reply.raw.writeHead(200, {
        ...(reply.getHeaders() as Record<string, string>),
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache, no-transform",
        connection: "keep-alive",
        "x-accel-buffering": "no",
      });
      const log = request.log.child({ operationId: id });
      let lastWrite = Date.now();
      const write = (text: string) => {
        reply.raw.write(text);
        lastWrite = Date.now();
      };
      write(`retry: ${Math.max(1000, pollMs)}\n\n`);
      /** The source event last sent on this connection (a reconnect gets the current one). */
      let sourceKey: string | undefined;
      try {
        for (;;) {
          const { events, position: next } = eventsSince(
            position,
            snapshot.view,
            snapshot.droppedEvents,
          );
          for (const e of events) write(sseFrame(e));
          position = next;
          const source = sourceEventSince(sourceKey, snapshot.view);
          if (source && !TERMINAL_STATUSES.has(snapshot.view.status)) {
            write(sseFrame(source.event));
            sourceKey = source.key;
          }
          if (TERMINAL_STATUSES.has(snapshot.view.status)) {
            const cost = await opts.cost?.get(id, abort.signal).catch((err: unknown) => {
              if (err instanceof NotReadyError) return undefined;
              throw err;
            });
            if (cost) {
              const { totalUsd, onDemandCounterfactualUsd, savingPercent, provisional } = cost;
              write(
                sseFrame({
                  event: "cost",
                  data: { totalUsd, onDemandCounterfactualUsd, savingPercent, provisional },
                }),
              );
            }
            break;
          }
          await sleep(pollMs, abort.signal);
          if (abort.signal.aborted) break;
          if (Date.now() - lastWrite >= heartbeatMs) write(": heartbeat\n\n");
          snapshot = await opts.operations.getWithFleet(id, abort.signal, viewer);
        }
      } catch (err) {
        // Headers are sent: a failure ends the stream; the client resumes from its last id.
        if (!abort.signal.aborted) log.warn({ err }, "events stream ended by an error");
      } finally {
        open.delete(abort);
        reply.raw.end();
      }
    },
  );
};

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
