import type { FastifyPluginAsync } from "fastify";

/** Liveness: the process answers HTTP. Deliberately touches no dependency. */
export const healthRoutes: FastifyPluginAsync = async (app) => {
  app.get(
    "/healthz",
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
