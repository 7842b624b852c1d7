/**
 * `POST /operations/:id/cancel|pause|resume`: operator control (../operation-control.ts).
 * 202 with the view when this request moved the operation (what follows runs in the
 * background), 200 with the view when it was in that state already; 404 for an operation the
 * token may not see; 409 naming the state when the move is not allowed.
 */
import type { FastifyPluginAsync } from "fastify";
import { controlActions } from "../operation-control.ts";
import type { OperationService } from "../operations.ts";
import { errorBodySchema, operationParamsSchema, operationViewSchema } from "./schemas.ts";

export interface ControlRoutesOptions {
  operations: OperationService;
}

export const controlRoutes: FastifyPluginAsync<ControlRoutesOptions> = async (app, opts) => {
  const errors = { 400: errorBodySchema, 404: errorBodySchema, 409: errorBodySchema };
  for (const action of controlActions) {
    app.post<{ Params: { id: string } }>(
      `/operations/:id/${action}`,
      {
        schema: {
          params: operationParamsSchema,
          response: { 200: operationViewSchema, 202: operationViewSchema, ...errors },
        },
      },
      async (request, reply) => {
        const { outcome, view } = await opts.operations.control(
          request.params.id,
          action,
          request.principal,
        );
        return reply.code(outcome === "applied" ? 202 : 200).send(view);
      },
    );
  }
};
