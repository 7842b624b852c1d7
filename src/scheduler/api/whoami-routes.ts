import type { FastifyPluginAsync } from "fastify";
import { whoamiSchema } from "../../shared/contracts/api.ts";
import type { TenantCaps } from "../../shared/schemas/tokens.ts";
import { routeSchema } from "./schemas.ts";

const whoamiRouteSchema = routeSchema(whoamiSchema);

export const WHOAMI_PATH = "/whoami";

export interface WhoamiRoutesOptions {
  /** The tenant's caps (its token lines' over the defaults). */
  capsOf: (tenant: string) => TenantCaps;
}

/** `GET /whoami`: the caller's tenant, role and caps (never the token). */
export const whoamiRoutes: FastifyPluginAsync<WhoamiRoutesOptions> = async (app, opts) => {
  app.get(
    WHOAMI_PATH,
    {
      schema: {
        response: {
          200: whoamiRouteSchema,
        },
      },
    },
    async (request) => ({
      tenant: request.principal.tenant,
      role: request.principal.role,
      caps: opts.capsOf(request.principal.tenant),
    }),
  );
};
