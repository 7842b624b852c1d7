/**
 * Bearer-token authentication: with tokens configured, every request but the load balancer's
 * health check must carry `Authorization: Bearer <token>` with one of them (several allow a
 * rotation). Refusals are 401 UNAUTHORIZED through the API's error handler. An accepted token
 * sets `request.principal` (its tenant and role); without tokens every request is ANONYMOUS.
 */
import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from "fastify";
import { UnauthorizedError } from "../../shared/errors.ts";
import { HEALTH_PATH } from "./health-routes.ts";
import { ANONYMOUS, type Principal, type TenantDirectory } from "./tenants.ts";

declare module "fastify" {
  interface FastifyRequest {
    /** Who is calling (set by the auth hook before anything else runs). */
    principal: Principal;
  }
}

const BEARER = /^Bearer +(\S+) *$/i;

/**
 * Called with a request about to be refused 401, before it is; may throw instead (the failed
 * authentication limit answers 429).
 */
export type OnAuthFailure = (request: FastifyRequest, reply: FastifyReply) => Promise<void>;

/** An onRequest hook that refuses requests without one of the directory's tokens. */
export function bearerAuth(
  directory: TenantDirectory,
  onFailure: OnAuthFailure = async () => {},
): onRequestAsyncHookHandler {
  return async (request, reply) => {
    if (directory.anonymous) {
      request.principal = ANONYMOUS;
      return;
    }
    // The load balancer's health check carries no token (HEAD is GET's automatic twin).
    if (request.routeOptions.url === HEALTH_PATH) return;
    const header = request.headers.authorization;
    const presented = header === undefined ? undefined : BEARER.exec(header)?.[1];
    if (presented === undefined) {
      await onFailure(request, reply);
      throw new UnauthorizedError("missing bearer token: send Authorization: Bearer <token>");
    }
    const principal = directory.authenticate(presented);
    if (!principal) {
      await onFailure(request, reply);
      throw new UnauthorizedError("invalid bearer token");
    }
    request.principal = principal;
  };
}
