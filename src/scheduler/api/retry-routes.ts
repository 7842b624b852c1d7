/**
 * `POST /operations/:id/retry`: runs the failed rows of a finished operation again
 * (OperationService.retry). Optional JSON body `{"options": {...}}`: task options to change,
 * checked by the task's strict schema as at submission (400 naming the field). 202 with the
 * view (now `running`, the new retry last in `retries`); 404 for an operation the token may not
 * see; 409 naming the status unless it ended `succeeded-with-failures` or `failed`.
 */
import type { FastifyPluginAsync } from "fastify";
import { retryRequestSchema as retryRequestContract } from "../../shared/contracts/operations.ts";
import type { OperationService } from "../operations.ts";
import {
  errorBodySchema,
  operationParamsSchema,
  operationViewSchema,
  routeSchema,
  zodValidator,
} from "./schemas.ts";

export interface RetryRoutesOptions {
  operations: OperationService;
}

const retryBodySchema = routeSchema(retryRequestContract, "input");

export const retryRoutes: FastifyPluginAsync<RetryRoutesOptions> = async (app, opts) => {
  app.post<{ Params: { id: string }; Body: unknown }>(
    "/operations/:id/retry",
    {
      schema: {
        params: operationParamsSchema,
        body: retryBodySchema,
        response: {
          202: operationViewSchema,
          400: errorBodySchema,
          404: errorBodySchema,
          409: errorBodySchema,
        },
      },
      // The contract itself validates (Ajv would drop an unknown field in silence); no body at
      // all is no change of options.
      validatorCompiler: ({ httpPart }) => {
        if (httpPart !== "body") return () => true;
        const validate = zodValidator(retryRequestContract, "body");
        return (data: unknown) => validate(data ?? {});
      },
    },
    async (request, reply) => {
      const view = await opts.operations.retry(
        request.params.id,
        request.body,
        undefined,
        request.principal,
      );
      return reply.code(202).send(view);
    },
  );
};
