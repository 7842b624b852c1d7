import type { FastifyPluginAsync } from "fastify";
import { versionInfo } from "../../shared/version.ts";

/** The release this scheduler runs. Behind the bearer token like every route but /healthz. */
export const VERSION_PATH = "/version";

export const versionRoutes: FastifyPluginAsync = async (app) => {
  app.get(
    VERSION_PATH,
    {
      schema: {
        response: {
          200: {
            type: "object",
            required: ["name", "version", "node"],
            properties: {
              name: { type: "string" },
              version: { type: "string" },
              node: { type: "string" },
            },
          },
        },
      },
    },
    async () => versionInfo(),
  );
};
