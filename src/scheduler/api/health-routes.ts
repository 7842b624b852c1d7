import type { FastifyPluginAsync } from "fastify";
import { healthSchema } from "../../shared/contracts/api.ts";
import { routeSchema } from "./schemas.ts";

const healthRouteSchema = routeSchema(healthSchema);

/** The load balancer's health check path; open even when the API wants a token. */
export const HEALTH_PATH = "/healthz";

/** Liveness: the process answers HTTP. Deliberately touches no dependency. */
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
    async () => ({ ok: true }),
  );
};
