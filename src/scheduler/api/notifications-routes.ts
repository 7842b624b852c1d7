/**
 * `GET /operations/:id/notifications`: what was sent about an operation, per event and channel,
 * failures included (a notification failure never fails the operation; it shows here).
 */
import type { FastifyPluginAsync } from "fastify";
import { NOTIFY_EVENTS } from "../../shared/schemas/notify.ts";
import type { NotificationRecords } from "../notify/records.ts";
import type { OperationService } from "../operations.ts";
import { operationParamsSchema } from "./schemas.ts";

/** The answer's JSON schema: fields not listed are never sent (see notificationRecordSchema). */
const notificationsResponseSchema = {
  type: "object",
  required: ["notifications"],
  properties: {
    notifications: {
      type: "array",
      items: {
        type: "object",
        required: ["event", "state", "claimedAt", "deliveries"],
        properties: {
          event: { type: "string", enum: [...NOTIFY_EVENTS] },
          state: { type: "string", enum: ["sending", "sent", "skipped"] },
          skipped: { type: "string" },
          claimedAt: { type: "string" },
          deliveries: {
            type: "array",
            items: {
              type: "object",
              required: ["channel", "source", "target", "ok", "attempts", "at"],
              properties: {
                channel: { type: "string", enum: ["webhook", "email"] },
                source: { type: "string", enum: ["spec", "deployment"] },
                target: { type: "string" },
                ok: { type: "boolean" },
                attempts: { type: "integer" },
                error: { type: "string" },
                at: { type: "string" },
              },
            },
          },
        },
      },
    },
  },
} as const;

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
    { schema: { params: operationParamsSchema, response: { 200: notificationsResponseSchema } } },
    async (request) => {
      // Another tenant's operation answers 404 exactly as an unknown one.
      await opts.operations.authorize(request.params.id, request.principal);
      return { notifications: await opts.records.list(request.params.id) };
    },
  );
};
