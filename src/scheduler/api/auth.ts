/**
 * Bearer-token authentication: with tokens configured, every request but the load balancer's
 * health check must carry `Authorization: Bearer <token>` with one of them (several allow a
 * rotation). Refusals are 401 UNAUTHORIZED through the API's error handler. An accepted token
 * sets `request.principal` (its tenant and role); without tokens every request is ANONYMOUS.
 */
import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from "fastify";
import { UnauthorizedError } from "../../shared/errors.ts";
import type { EventTickets } from "./event-tickets.ts";
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

export interface BearerAuthOptions {
  /**
   * Route patterns anyone may fetch: the web console's page and bundle (code, never data).
   * @default none
   */
  publicRoutes?: ReadonlySet<string>;
  /**
   * The events stream's route and its tickets: a request to it without a bearer token may carry
   * `?ticket=` instead (EventSource cannot send headers). @default none
   */
  eventTickets?: { route: string; tickets: EventTickets };
}

/** An onRequest hook that refuses requests without one of the directory's tokens. */
export function bearerAuth(
  directory: TenantDirectory,
  onFailure: OnAuthFailure = async () => {},
  options: BearerAuthOptions = {},
): onRequestAsyncHookHandler {
  return async (request, reply) => {
    if (directory.anonymous) {
      request.principal = ANONYMOUS;
      return;
    }
    // The load balancer's health check carries no token (HEAD is GET's automatic twin).
    const route = request.routeOptions.url;
    if (route === HEALTH_PATH) return;
    if (route !== undefined && options.publicRoutes?.has(route)) return;
    const header = request.headers.authorization;
    const ticket = (request.query as { ticket?: unknown } | undefined)?.ticket;
    if (
      header === undefined &&
      typeof ticket === "string" &&
      options.eventTickets &&
      route === options.eventTickets.route
    ) {
      const id = (request.params as { id?: string }).id ?? "";
      const principal = options.eventTickets.tickets.verify(ticket, id);
      if (!principal) {
        await onFailure(request, reply);
        throw new UnauthorizedError("invalid or expired events ticket: ask for a new one");
      }
      request.principal = principal;
      return;
    }
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
