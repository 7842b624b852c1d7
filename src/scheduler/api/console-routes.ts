/**
 * The web console: its page at `/` and its bundle under `/console/` (built by
 * `scripts/build-console.ts` into `dist/console/`, served by `@fastify/static`; no CDN), plus
 * what the console asks of the API beyond the operation routes: a ticket for the events stream
 * and the tasks the scheduler offers. The page and bundle are code, not data: they need no token
 * (the console signs in with one); everything they fetch does.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import fastifyStatic from "@fastify/static";
import type { FastifyPluginAsync } from "fastify";
import { eventTicketSchema, taskOfferSchema } from "../../shared/contracts/console.ts";
import { NotFoundError } from "../../shared/errors.ts";
import { listPlugins } from "../../shared/plugins.ts";
import type { NotifyChannels } from "../notify/spec-check.ts";
import type { OperationService } from "../operations.ts";
import type { EventTickets } from "./event-tickets.ts";
import { errorBodySchema, operationParamsSchema, routeSchema } from "./schemas.ts";

/** Where the bundle is: `<package root>/dist/console`, from `src/…` and `dist/…` alike. */
export const DEFAULT_CONSOLE_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../../dist/console",
);

/** The routes the console's page and bundle answer on: open to anyone (see auth.ts). */
export const CONSOLE_PUBLIC_ROUTES: ReadonlySet<string> = new Set(["/", "/console/*"]);

export interface ConsoleRoutesOptions {
  operations: OperationService;
  tickets: EventTickets;
  /** The built bundle. @default DEFAULT_CONSOLE_DIR */
  dir?: string;
  /** The workers' plugin directory, for the transform plugin list. @default none (empty list) */
  pluginDir?: string;
  /** Notification channels the deployment has on. @default both off */
  notify?: NotifyChannels;
}

export const consoleRoutes: FastifyPluginAsync<ConsoleRoutesOptions> = async (app, opts) => {
  const dir = opts.dir ?? DEFAULT_CONSOLE_DIR;
  const built = existsSync(path.join(dir, "index.html"));
  if (built) {
    await app.register(fastifyStatic, {
      root: dir,
      prefix: "/console/",
      index: false,
      // Not in the API description: files, not API routes.
      schemaHide: true,
    });
  } else {
    app.log.warn({ dir }, "the web console is not built (npm run build): GET / answers 404");
  }
  app.get("/", { schema: { hide: true } }, async (_request, reply) => {
    if (!built) {
      throw new NotFoundError("the web console is not built: run npm run build");
    }
    return reply.header("cache-control", "no-cache").sendFile("index.html");
  });

  app.post<{ Params: { id: string } }>(
    "/operations/:id/events/ticket",
    {
      schema: {
        params: operationParamsSchema,
        response: {
          200: routeSchema(eventTicketSchema),
          400: errorBodySchema,
          404: errorBodySchema,
        },
      },
    },
    async (request) => {
      // Another tenant's (or an unknown) id is 404 here, as on the stream itself.
      await opts.operations.authorize(request.params.id, request.principal);
      return opts.tickets.issue(request.params.id, request.principal);
    },
  );

  app.get("/tasks", { schema: { response: { 200: routeSchema(taskOfferSchema) } } }, async () => ({
    tasks: [
      { name: "http-enrich" as const },
      {
        name: "transform" as const,
        plugins: opts.pluginDir === undefined ? [] : await listPlugins(opts.pluginDir),
      },
    ],
    notify: opts.notify ?? { webhook: false, email: false },
  }));
};
