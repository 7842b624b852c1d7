import type { FastifyPluginAsync } from "fastify";
import { HEALTH_PID_HEADER, healthSchema } from "../../shared/contracts/api.ts";
import { routeSchema } from "./schemas.ts";

const healthRouteSchema = routeSchema(healthSchema);

/** The load balancer's health check path; open even when the API wants a token. */
export const HEALTH_PATH = "/healthz";

/**
 * Liveness: the process answers HTTP. Deliberately touches no dependency. The answering
 * process's pid is in a header (the local stack's readiness check).
 */
export const healthRoutes: FastifyPluginAsync = async (app) => {
  app.get(
    HEALTH_PATH,
    {
      schema: {
        response: {
          200: healthRouteSchema,
        },
      },
    },
    async (_request, reply) => {
      reply.header(HEALTH_PID_HEADER, String(process.pid));
      return { ok: true };
    },
  );
};
