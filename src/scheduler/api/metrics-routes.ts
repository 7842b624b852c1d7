/**
 * `GET /metrics` (Prometheus text format) and the request-duration hook every route reports to.
 *
 * Metrics cover every tenant (their series carry a `tenant` label), so only an `admin` token
 * may scrape them (a `member` gets 403); without tokens the API is one user's and it is open
 * like every other route. Registered with fastify-plugin so the hook sees all routes.
 */
import type { FastifyPluginAsync } from "fastify";
import fp from "fastify-plugin";
import { ShardfleetError } from "../../shared/errors.ts";
import type { SchedulerMetrics } from "../metrics/metrics.ts";

export const METRICS_PATH = "/metrics";

export interface MetricsRoutesOptions {
  metrics: SchedulerMetrics;
}

const routes: FastifyPluginAsync<MetricsRoutesOptions> = async (app, opts) => {
  app.addHook("onResponse", async (request, reply) => {
    // The route pattern, never the URL: ids must not become label values.
    const route = request.routeOptions.url ?? "(unmatched)";
    opts.metrics.observeRequest(request.method, route, reply.statusCode, reply.elapsedTime / 1000);
  });
  app.get(METRICS_PATH, async (request, reply) => {
    if (request.principal.role !== "admin") {
      throw new ShardfleetError(
        "FORBIDDEN",
        "metrics cover every tenant: scraping them needs an admin token",
      );
    }
    const text = await opts.metrics.render();
    return reply.header("content-type", opts.metrics.contentType).send(text);
  });
};

export const metricsRoutes = fp(routes, { name: "shardfleet-metrics" });
