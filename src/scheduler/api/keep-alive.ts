/**
 * How long an idle keep-alive connection stays open, in ms: a little longer than the AWS load
 * balancer's idle timeout (pulumi/scheduler.ts, 900 s, checked against this), so that the load
 * balancer always closes an idle connection first. Were the server first, a request the load
 * balancer sends on a connection just being closed would get a 502. Fastify's default is 72 s.
 * A module of its own so the Pulumi program can read it without loading the API.
 */
export const KEEP_ALIVE_TIMEOUT_MS = 905_000;
