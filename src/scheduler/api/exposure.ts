/**
 * Who can reach an API without tokens: on loopback only its own machine, which is how the local
 * stack and the demo run. Anywhere else anyone on the network could submit work and read every
 * result, so that needs SHARDFLEET_API_ALLOW_ANONYMOUS=true, and is then warned about.
 */
import { ConfigError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import { isLoopbackHost } from "../../shared/loopback.ts";

/**
 * Throws a ConfigError (the scheduler stops, exit 78) for an unauthenticated API beyond
 * loopback unless allowed; logs at warn level when allowed.
 */
export function checkExposure(
  api: { host: string; anonymous: boolean; allowAnonymous: boolean },
  logger: Logger,
): void {
  if (!api.anonymous || isLoopbackHost(api.host)) return;
  if (!api.allowAnonymous) {
    throw new ConfigError(
      `refusing to serve the API on ${api.host} without tokens: anyone who reaches it could submit work and read every result. Set SHARDFLEET_API_TOKENS_FILE (or SHARDFLEET_API_TOKEN_SSM_PARAMETER), listen on 127.0.0.1, or set SHARDFLEET_API_ALLOW_ANONYMOUS=true`,
      { details: { setting: "SHARDFLEET_API_ALLOW_ANONYMOUS" } },
    );
  }
  logger.warn(
    { host: api.host, setting: "SHARDFLEET_API_ALLOW_ANONYMOUS" },
    `THE API IS OPEN: no tokens and listening on ${api.host}; anyone who reaches it can submit work and read every operation`,
  );
}
