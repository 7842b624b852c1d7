/**
 * The scheduler's HTTP API as a fastify app, built without listening (tests `inject()`).
 */
import multipart from "@fastify/multipart";
import Fastify, { type FastifyInstance } from "fastify";
import type { Logger } from "../../shared/logger.ts";
import type { CostService } from "../cost/cost-service.ts";
import type { OperationService } from "../operations.ts";
import { bearerAuth } from "./auth.ts";
import { handleError, handleNotFound } from "./errors.ts";
import { healthRoutes } from "./health-routes.ts";
import { KEEP_ALIVE_TIMEOUT_MS } from "./keep-alive.ts";
import { operationRoutes } from "./operations-routes.ts";
import { versionRoutes } from "./version-routes.ts";

export interface AppDeps {
  operations: OperationService;
  logger: Logger;
  /** Upload cap in bytes; bigger files are refused with 413. */
  maxUploadBytes: number;
  /** Cost reports (`GET /operations/:id/cost`). @default undefined (the route answers 404) */
  cost?: CostService;
  /**
   * Bearer tokens, any of which a request must carry (all routes but `/healthz`).
   * @default [] (no authentication)
   */
  apiTokens?: readonly string[];
}

export function buildApp(deps: AppDeps): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger,
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    // Ids are generated server-side; a client-chosen request id is not trusted.
    genReqId: () => crypto.randomUUID(),
  });
  app.setErrorHandler(handleError);
  app.setNotFoundHandler(handleNotFound);
  // Before multipart parsing: a refused upload is never parsed or stored (Node discards it).
  if (deps.apiTokens?.length) app.addHook("onRequest", bearerAuth(deps.apiTokens));
  void app.register(multipart, {
    limits: { fileSize: deps.maxUploadBytes },
    // The intake sees busboy's `truncated` and answers 413 with its own message.
    throwFileSizeLimit: false,
  });
  void app.register(healthRoutes);
  void app.register(versionRoutes);
  void app.register(operationRoutes, {
    operations: deps.operations,
    maxUploadBytes: deps.maxUploadBytes,
    ...(deps.cost ? { cost: deps.cost } : {}),
  });
  // pino's Logger is a FastifyBaseLogger with more generics; callers need only the base.
  return app as unknown as FastifyInstance;
}
