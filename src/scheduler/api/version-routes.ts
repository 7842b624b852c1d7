import type { FastifyPluginAsync } from "fastify";
import { versionSchema } from "../../shared/contracts/api.ts";
import { versionInfo } from "../../shared/version.ts";
import { routeSchema } from "./schemas.ts";

const versionRouteSchema = routeSchema(versionSchema);

/** The release this scheduler runs. Behind the bearer token like every route but /healthz. */
export const VERSION_PATH = "/version";

export const versionRoutes: FastifyPluginAsync = async (app) => {
  app.get(
    VERSION_PATH,
    {
      schema: {
        response: {
          200: versionRouteSchema,
        },
      },
    },
    async () => versionInfo(),
  );
};
