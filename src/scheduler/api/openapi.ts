/**
 * The API's own description: OpenAPI 3.1 at `/openapi.json`, built by `@fastify/swagger` from
 * the JSON schemas the routes are registered with (themselves generated from the shared zod
 * contracts), and a human-readable page at `/docs` (`@fastify/swagger-ui`, its assets served by
 * the scheduler itself: no CDN). Register before the routes: the document collects every route
 * registered after it.
 */

import type { IncomingMessage, ServerResponse } from "node:http";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import type { FastifyBaseLogger, FastifyInstance, RawServerDefault } from "fastify";
import { versionInfo } from "../../shared/version.ts";

export const OPENAPI_PATH = "/openapi.json";
export const DOCS_PATH = "/docs";

/** Registers the document, its route and the docs page on the app itself (not encapsulated). */
export function registerOpenApi<L extends FastifyBaseLogger>(
  app: FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, L>,
): void {
  const { version } = versionInfo();
  void app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "shardfleet scheduler API",
        version,
        description:
          "Per-row batch work on spot capacity: submit a workbook and a task, follow the operation, download its output and cost report.",
      },
      components: {
        securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
      },
      // Every route but /healthz needs the token when the API has tokens.
      security: [{ bearer: [] }],
    },
  });
  void app.register(swaggerUi, { routePrefix: DOCS_PATH });
  app.get(OPENAPI_PATH, { schema: { hide: true } }, async () => app.swagger());
}
