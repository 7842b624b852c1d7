import type { FastifyPluginAsync } from "fastify";
import type { TenantCaps } from "../../shared/schemas/tokens.ts";

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
          200: {
            type: "object",
            required: ["tenant", "role", "caps"],
            properties: {
              tenant: { type: "string" },
              role: { type: "string", enum: ["member", "admin"] },
              caps: {
                type: "object",
                description: "absent: no per-tenant cap (the fleet's own caps still hold)",
                properties: {
                  maxOperations: { type: "integer" },
                  maxInstances: { type: "integer" },
                  maxHourlyUsd: { type: "number" },
                },
              },
            },
          },
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
