/**
 * `GET /operations/:id/notifications`: what was sent about an operation, per event and channel,
 * failures included (a notification failure never fails the operation; it shows here).
 */
import type { FastifyPluginAsync } from "fastify";
import type { NotificationRecords } from "../notify/records.ts";
import type { OperationService } from "../operations.ts";
import { operationParamsSchema } from "./schemas.ts";

export interface NotificationRoutesOptions {
  operations: OperationService;
  records: NotificationRecords;
}

export const notificationRoutes: FastifyPluginAsync<NotificationRoutesOptions> = async (
  app,
  opts,
) => {
  app.get<{ Params: { id: string } }>(
    "/operations/:id/notifications",
    { schema: { params: operationParamsSchema } },
    async (request) => {
      // Another tenant's operation answers 404 exactly as an unknown one.
      await opts.operations.authorize(request.params.id, request.principal);
      return { notifications: await opts.records.list(request.params.id) };
    },
  );
};
