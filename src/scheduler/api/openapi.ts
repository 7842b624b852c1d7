/**
 * The API's own description: OpenAPI 3.1 at `/openapi.json`, built by `@fastify/swagger` from
 * the JSON schemas the routes are registered with (themselves generated from the shared zod
 * contracts), and a human-readable page at `/docs` (static HTML rendered from the document: no
 * script, no CDN). Register before the routes: the document collects every route
 * registered after it.
 */

import type { IncomingMessage, ServerResponse } from "node:http";
import swagger from "@fastify/swagger";
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
  app.get(OPENAPI_PATH, { schema: { hide: true } }, async () => app.swagger());
  app.get(DOCS_PATH, { schema: { hide: true } }, async (_request, reply) =>
    reply.type("text/html; charset=utf-8").send(docsPage(app.swagger() as OpenApiDoc)),
  );
}

type Operation = {
  summary?: string;
  description?: string;
  parameters?: { name: string; in: string }[];
};
type OpenApiDoc = {
  info: { title: string; version: string; description?: string };
  paths?: Record<string, Record<string, Operation>>;
};

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * The document as one static HTML page (no script, no CDN: helmet's CSP holds): every route
 * with its parameters, and a link to the full document for the schemas.
 */
function docsPage(doc: OpenApiDoc): string {
  const rows = Object.entries(doc.paths ?? {}).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, op]) => {
      const params = (op.parameters ?? []).map((p) => `${p.name} (${p.in})`).join(", ");
      return `<tr><td><code>${method.toUpperCase()}</code></td><td><code>${escapeHtml(path)}</code></td><td>${escapeHtml(params)}</td><td>${escapeHtml(op.summary ?? op.description ?? "")}</td></tr>`;
    }),
  );
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(doc.info.title)}</title></head><body><h1>${escapeHtml(doc.info.title)} ${escapeHtml(doc.info.version)}</h1><p>${escapeHtml(doc.info.description ?? "")}</p><p>Schemas of every body: <a href="${OPENAPI_PATH}">${OPENAPI_PATH}</a> (OpenAPI 3.1).</p><table border="1" cellpadding="4"><thead><tr><th>method</th><th>path</th><th>parameters</th><th>about</th></tr></thead><tbody>${rows.join("")}</tbody></table></body></html>`;
}
