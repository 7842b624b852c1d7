/**
 * Bearer-token authentication: with tokens configured, every request but the load balancer's
 * health check must carry `Authorization: Bearer <token>` with one of them (several allow a
 * rotation). Refusals are 401 UNAUTHORIZED through the API's error handler.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { onRequestAsyncHookHandler } from "fastify";
import { UnauthorizedError } from "../../shared/errors.ts";
import { HEALTH_PATH } from "./health-routes.ts";

const BEARER = /^Bearer +(\S+) *$/i;

const sha256 = (value: string): Buffer => createHash("sha256").update(value).digest();

/**
 * Equal-length digests let timingSafeEqual compare a token of any length, and every known
 * token is compared (no early exit), so timing tells neither which token nor how much matched.
 */
function matchesAny(presented: string, digests: readonly Buffer[]): boolean {
  const digest = sha256(presented);
  let match = false;
  for (const known of digests) match = timingSafeEqual(digest, known) || match;
  return match;
}

/** An onRequest hook that refuses requests without one of `tokens` (at least one). */
export function bearerAuth(tokens: readonly string[]): onRequestAsyncHookHandler {
  if (tokens.length === 0) throw new Error("bearerAuth needs at least one token");
  const digests = tokens.map(sha256);
  return async (request) => {
    // The load balancer's health check carries no token (HEAD is GET's automatic twin).
    if (request.routeOptions.url === HEALTH_PATH) return;
    const header = request.headers.authorization;
    const presented = header === undefined ? undefined : BEARER.exec(header)?.[1];
    if (presented === undefined) {
      throw new UnauthorizedError("missing bearer token: send Authorization: Bearer <token>");
    }
    if (!matchesAny(presented, digests)) throw new UnauthorizedError("invalid bearer token");
  };
}
