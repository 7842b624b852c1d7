/**
 * The scheduler's HTTP API as a fastify app, built without listening (tests `inject()`).
 */
import helmet from "@fastify/helmet";
import multipart from "@fastify/multipart";
import rateLimit from "@fastify/rate-limit";
import Fastify, { type FastifyInstance, LogController } from "fastify";
import { systemClock } from "../../shared/clock.ts";
import { type ApiLimits, DEFAULT_API_LIMITS } from "../../shared/config.ts";
import { ShardfleetError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import { isLoopbackHost } from "../../shared/loopback.ts";
import type { ApiToken } from "../../shared/schemas/tokens.ts";
import type { CostService } from "../cost/cost-service.ts";
import type { SchedulerMetrics } from "../metrics/metrics.ts";
import type { NotificationRecords } from "../notify/records.ts";
import type { NotifyChannels } from "../notify/spec-check.ts";
import type { OperationService } from "../operations.ts";
import type { WorkbookLimits } from "../workbook/limits.ts";
import { bearerAuth } from "./auth.ts";
import { CONSOLE_PUBLIC_ROUTES, consoleRoutes } from "./console-routes.ts";
import { controlRoutes } from "./control-routes.ts";
import { handleError, handleNotFound } from "./errors.ts";
import { EventTickets } from "./event-tickets.ts";
import { eventRoutes } from "./events-routes.ts";
import { HEALTH_PATH, healthRoutes } from "./health-routes.ts";
import { KEEP_ALIVE_TIMEOUT_MS } from "./keep-alive.ts";
import { metricsRoutes } from "./metrics-routes.ts";
import { notificationRoutes } from "./notifications-routes.ts";
import { registerOpenApi } from "./openapi.ts";
import { operationRoutes } from "./operations-routes.ts";
import { previewRoutes } from "./preview-routes.ts";
import { retryRoutes } from "./retry-routes.ts";
import { ANONYMOUS, TenantDirectory } from "./tenants.ts";
import { versionRoutes } from "./version-routes.ts";
import { whoamiRoutes } from "./whoami-routes.ts";

export interface AppDeps {
  operations: OperationService;
  logger: Logger;
  /** Upload cap in bytes; bigger files are refused with 413. */
  maxUploadBytes: number;
  /** Cost reports (`GET /operations/:id/cost`). @default undefined (the route answers 404) */
  cost?: CostService;
  /**
   * Who may call: tokens by hash with their tenant, role and caps.
   * @default a directory of `apiTokens`
   */
  tenants?: TenantDirectory;
  /**
   * Bearer tokens, any of which a request must carry (all routes but `/healthz`), when no
   * `tenants` is given. @default [] (no authentication)
   */
  apiTokens?: readonly ApiToken[];
  /** The events stream's record reads and heartbeats. @default 1 s, 15 s */
  events?: { pollMs?: number; heartbeatMs?: number };
  /** Timeouts, upload rate and request rate. @default DEFAULT_API_LIMITS */
  limits?: Partial<ApiLimits>;
  /** Notification records (`GET /operations/:id/notifications`). @default undefined (404) */
  notifications?: NotificationRecords;
  /** Prometheus metrics (`GET /metrics`, admin only). @default undefined (404) */
  metrics?: SchedulerMetrics;
  /**
   * The web console: where its bundle is, and what the upload page offers (transform plugins,
   * notification channels). @default the bundle in dist/console, no plugins, no channels
   */
  console?: {
    dir?: string;
    pluginDir?: string;
    notify?: NotifyChannels;
    /** The intake's workbook limits, for the upload page's preview. @default the defaults */
    workbookLimits?: WorkbookLimits;
  };
  /** Tickets for the events stream (EventSource sends no headers). @default a key per process */
  eventTickets?: EventTickets;
}

/** The events stream's route pattern, which also accepts a ticket (auth.ts). */
const EVENTS_ROUTE = "/operations/:id/events";

export function buildApp(deps: AppDeps): FastifyInstance {
  const limits = { ...DEFAULT_API_LIMITS, ...deps.limits };
  const tenants = deps.tenants ?? new TenantDirectory(deps.apiTokens ?? []);
  const tickets = deps.eventTickets ?? new EventTickets({ clock: systemClock });
  const app = Fastify({
    loggerInstance: deps.logger,
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    // A socket silent this long within a request is closed (between requests, keepAliveTimeout).
    connectionTimeout: limits.socketIdleTimeoutMs,
    // No cap on a whole request: large uploads must stream; a trickle is cut by the upload rate.
    requestTimeout: 0,
    // request.ip is the client behind this many proxies (X-Forwarded-For), for address limits.
    ...(limits.trustedProxies > 0
      ? { trustProxy: (_address: string, hop: number) => hop < limits.trustedProxies }
      : {}),
    // Ids are generated server-side; a client-chosen request id is not trusted.
    genReqId: () => crypto.randomUUID(),
    // No line per request at info (the CLI and console poll twice a second): see the hook below.
    logController: new LogController({ disableRequestLogging: true }),
    http: {
      // Node's own slowloris guard: the headers must have arrived within this (else 408)...
      headersTimeout: limits.headersTimeoutMs,
      // ...checked this often (Node's default, 30 s, would let a trickle live up to 30 s more).
      connectionsCheckingInterval: Math.min(5_000, Math.max(100, limits.headersTimeoutMs / 4)),
    },
  });
  app.setErrorHandler(handleError);
  app.setNotFoundHandler(handleNotFound);
  // Fastify's two lines per request, at debug instead of info (no headers: tokens stay out).
  app.addHook("onRequest", async (request) => {
    request.log.debug(
      { req: { method: request.method, url: request.url, remoteAddress: request.ip } },
      "incoming request",
    );
  });
  app.addHook("onResponse", async (request, reply) => {
    request.log.debug(
      { res: { statusCode: reply.statusCode }, responseTime: reply.elapsedTime },
      "request completed",
    );
  });
  // Before multipart parsing: a refused upload is never parsed or stored (Node discards it).
  app.decorateRequest("principal", undefined as never);
  // Token guessing: refusals count per client address; past the limit they are 429s.
  let failedAuth: ReturnType<FastifyInstance["createRateLimit"]> | undefined;
  app.addHook(
    "onRequest",
    bearerAuth(
      tenants,
      async (request, reply) => {
        const counted = await failedAuth?.(request);
        if (counted && !counted.isAllowed && counted.isExceeded) {
          reply.header("retry-after", counted.ttlInSeconds);
          throw new ShardfleetError(
            "RATE_LIMITED",
            `too many refused tokens from this address (limit ${counted.max} a minute): retry after ${counted.ttlInSeconds} s`,
          );
        }
      },
      { publicRoutes: CONSOLE_PUBLIC_ROUTES, eventTickets: { route: EVENTS_ROUTE, tickets } },
    ),
  );
  // Security headers for the web console (same origin, no CDN): helmet's defaults, whose CSP
  // allows only 'self', with styles from 'self' only too (the console has no inline style, and
  // scripts set styles through the CSSOM, which CSP allows). Requests are not upgraded to https:
  // the local stack serves plain http on loopback; on AWS the load balancer serves https only.
  void app.register(helmet, {
    contentSecurityPolicy: {
      directives: { styleSrc: ["'self'"], upgradeInsecureRequests: null },
    },
  });
  if (limits.rateLimitPerMinute > 0 || limits.failedAuthPerMinute > 0) {
    // Route hooks run after the auth hook above: requests count per token (its hash), and
    // without tokens per client address.
    void app.register(rateLimit, {
      global: limits.rateLimitPerMinute > 0,
      max: Math.max(1, limits.rateLimitPerMinute),
      timeWindow: 60_000,
      keyGenerator: (request) =>
        !request.principal || request.principal === ANONYMOUS ? request.ip : request.principal.key,
      // Not limited: the health check, and anonymous callers on this machine (the local stack,
      // the demo and the tests poll freely; an exposed anonymous API still limits the rest).
      allowList: (request) =>
        request.routeOptions.url === HEALTH_PATH ||
        (request.principal === ANONYMOUS && isLoopbackHost(request.ip)),
      errorResponseBuilder: (_request, context) =>
        new ShardfleetError(
          "RATE_LIMITED",
          `rate limit of ${context.max} requests a minute exceeded: retry after ${context.after}`,
        ),
    });
    if (limits.failedAuthPerMinute > 0) {
      app.after(() => {
        failedAuth = app.createRateLimit({
          max: limits.failedAuthPerMinute,
          timeWindow: 60_000,
          keyGenerator: (request) => `refused:${request.ip}`,
          allowList: () => false,
        });
      });
    }
  }
  void app.register(multipart, {
    limits: { fileSize: deps.maxUploadBytes },
    // The intake sees busboy's `truncated` and answers 413 with its own message.
    throwFileSizeLimit: false,
  });
  // Before the routes: the OpenAPI document collects every route registered after it.
  registerOpenApi(app);
  // Before the other routes: its request-duration hook must see them.
  if (deps.metrics) void app.register(metricsRoutes, { metrics: deps.metrics });
  void app.register(healthRoutes);
  void app.register(versionRoutes);
  void app.register(whoamiRoutes, { capsOf: (tenant) => tenants.capsOf(tenant) });
  void app.register(operationRoutes, {
    operations: deps.operations,
    maxUploadBytes: deps.maxUploadBytes,
    capsOf: (tenant) => tenants.capsOf(tenant),
    uploadRate: {
      minBytesPerSecond: limits.minUploadBytesPerSecond,
      windowMs: limits.uploadRateWindowMs,
    },
    ...(deps.cost ? { cost: deps.cost } : {}),
  });
  if (deps.notifications) {
    void app.register(notificationRoutes, {
      operations: deps.operations,
      records: deps.notifications,
    });
  }
  void app.register(controlRoutes, { operations: deps.operations });
  void app.register(retryRoutes, { operations: deps.operations });
  void app.register(eventRoutes, {
    operations: deps.operations,
    ...deps.events,
    ...(deps.cost ? { cost: deps.cost } : {}),
  });
  const { workbookLimits, ...consoleOptions } = deps.console ?? {};
  void app.register(consoleRoutes, { operations: deps.operations, tickets, ...consoleOptions });
  void app.register(previewRoutes, {
    maxUploadBytes: deps.maxUploadBytes,
    ...(workbookLimits ? { workbookLimits } : {}),
  });
  // pino's Logger is a FastifyBaseLogger with more generics; callers need only the base.
  return app as unknown as FastifyInstance;
}
