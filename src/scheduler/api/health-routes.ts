import type { FastifyPluginAsync } from "fastify";
import { HEALTH_PID_HEADER, healthSchema } from "../../shared/contracts/api.ts";
import { isLoopbackHost } from "../../shared/loopback.ts";
import { routeSchema } from "./schemas.ts";

const healthRouteSchema = routeSchema(healthSchema);

/** The load balancer's health check path; open even when the API wants a token. */
export const HEALTH_PATH = "/healthz";

/**
 * Liveness: the process answers HTTP. Deliberately touches no dependency. The answering
 * process's pid is in a header for a caller on the same machine only (the local stack's
 * readiness check): a remote caller, or one behind a proxy (a forwarding header), learns
 * nothing about the host from an open route.
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
    async (request, reply) => {
      if (fromThisMachine(request.socket.remoteAddress, request.headers)) {
        reply.header(HEALTH_PID_HEADER, String(process.pid));
      }
      return { ok: true };
    },
  );
};

/** A loopback peer that forwards nobody else's request. */
function fromThisMachine(
  peer: string | undefined,
  headers: Record<string, string | string[] | undefined>,
): boolean {
  if (!peer || !isLoopbackHost(peer)) return false;
  return headers["x-forwarded-for"] === undefined && headers.forwarded === undefined;
}
