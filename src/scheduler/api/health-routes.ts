import type { FastifyPluginAsync } from "fastify";

/** The load balancer's health check path; open even when the API wants a token. */
export const HEALTH_PATH = "/healthz";

/** Liveness: the process answers HTTP. Deliberately touches no dependency. */
export const healthRoutes: FastifyPluginAsync = async (app) => {
  app.get(
    HEALTH_PATH,
    {
      schema: {
        response: {
          200: { type: "object", required: ["ok"], properties: { ok: { type: "boolean" } } },
        },
      },
    },
    async () => ({ ok: true }),
  );
};
