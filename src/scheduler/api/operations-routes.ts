/**
 * `/operations`: submit (multipart), list, show, download the result.
 */

import type { Multipart } from "@fastify/multipart";
import type { FastifyPluginAsync } from "fastify";
import { sharedAbortController } from "../../shared/async.ts";
import {
  type OperationListQuery,
  operationListQuerySchema as operationListQueryContract,
} from "../../shared/contracts/operations.ts";
import {
  BadInputError,
  NotFoundError,
  ShardfleetError,
  type UploadTooSlowError,
} from "../../shared/errors.ts";
import type { TenantCaps } from "../../shared/schemas/tokens.ts";
import { costChartSvg } from "../cost/chart.ts";
import type { CostService } from "../cost/cost-service.ts";
import { costCsv } from "../cost/format.ts";
import { costXlsx } from "../cost/xlsx.ts";
import { MAX_SPEC_BYTES, type SubmissionPart } from "../intake.ts";
import type { OperationService } from "../operations.ts";
import { XLSX_CONTENT_TYPE } from "../workbook/read-rows.ts";
import { decodeListCursor, encodeListCursor } from "./list-cursor.ts";
import {
  acceptedSchema,
  costQuerySchema,
  costReportSchema,
  errorBodySchema,
  listQuerySchema,
  operationListSchema,
  operationParamsSchema,
  operationViewSchema,
  zodValidator,
} from "./schemas.ts";
import { type UploadRateOptions, watchUploadRate } from "./upload-rate.ts";

export interface OperationRoutesOptions {
  operations: OperationService;
  /** Upload cap in bytes. */
  maxUploadBytes: number;
  /** Cost reports. @default undefined (`/operations/:id/cost` answers 404) */
  cost?: CostService;
  /** A tenant's caps (the operations cap is checked at submission). @default no caps */
  capsOf?: (tenant: string) => TenantCaps;
  /** The minimum upload rate. @default none */
  uploadRate?: UploadRateOptions;
}

/** Caps the parts a submission may have: spec, file, and a little slack for a clear 400. */
const MAX_PARTS = 10;

/**
 * The plugin's parts, in the intake's shape. Errors the parser raises for a malformed body
 * (no boundary, truncated data) are plain Errors: they become 400s here.
 */
async function* submissionParts(parts: AsyncIterable<Multipart>): AsyncGenerator<SubmissionPart> {
  const iterator = parts[Symbol.asyncIterator]();
  for (;;) {
    let next: IteratorResult<Multipart>;
    try {
      next = await iterator.next();
    } catch (err) {
      const e = err as { code?: string; statusCode?: number; message?: string };
      if (err instanceof ShardfleetError || e.code?.startsWith("FST_")) throw err;
      throw new BadInputError(
        "BAD_REQUEST",
        `malformed multipart body: ${e.message ?? String(err)}`,
      );
    }
    if (next.done) return;
    const part = next.value;
    if (part.type === "file") {
      yield {
        type: "file",
        fieldname: part.fieldname,
        filename: part.filename,
        mimetype: part.mimetype,
        file: part.file,
      };
    } else {
      yield {
        type: "field",
        fieldname: part.fieldname,
        value: part.value,
        valueTruncated: part.valueTruncated,
      };
    }
  }
}

export const operationRoutes: FastifyPluginAsync<OperationRoutesOptions> = async (app, opts) => {
  const { operations, maxUploadBytes } = opts;
  const errors = { 400: errorBodySchema, 404: errorBodySchema, 409: errorBodySchema };

  app.post(
    "/operations",
    { schema: { response: { 202: acceptedSchema } } },
    async (request, reply) => {
      const abort = sharedAbortController();
      // A client that goes away mid-upload should not leave an upload running. The response's
      // 'close' before it finished means the connection is gone (the request's 'close' is no
      // signal: it also fires once the body has simply been read).
      const onClose = () => {
        if (!reply.raw.writableFinished) abort.abort(new Error("client closed the connection"));
      };
      reply.raw.once("close", onClose);
      // A trickling upload fails the multipart parser (its 'error' listener on the request
      // ends the parts with this error) and the upload; the answer is 408, nothing is kept.
      let tooSlow: UploadTooSlowError | undefined;
      const stopWatching = opts.uploadRate
        ? watchUploadRate(request.raw, opts.uploadRate, (err) => {
            tooSlow = err;
            abort.abort(err);
            // The multipart parser listens only once it has started; before that (the caps
            // check still running) the abort alone ends the submission, and an 'error' with no
            // listener would throw out of the timer.
            if (request.raw.listenerCount("error") > 0) request.raw.emit("error", err);
          })
        : () => {};
      try {
        const { tenant } = request.principal;
        const maxOperations = opts.capsOf?.(tenant).maxOperations;
        const parts = request.parts({
          limits: { fileSize: maxUploadBytes, fieldSize: MAX_SPEC_BYTES, parts: MAX_PARTS },
        });
        const manifest = await operations.create(submissionParts(parts), {
          maxUploadBytes,
          signal: abort.signal,
          tenant,
          ...(maxOperations === undefined ? {} : { maxOperations }),
        });
        reply.code(202).header("location", `/operations/${manifest.id}`);
        return { id: manifest.id, status: manifest.status };
      } catch (err) {
        // Refused before the body was read to the end: the parser is left holding back the
        // rest, and a request that is never read keeps its connection (and app.close()) busy
        // for ever. Discard the rest, and close the connection after the answer so the client
        // stops sending.
        if (!request.raw.complete) {
          reply.header("connection", "close");
          request.raw.unpipe();
          request.raw.resume();
        }
        throw tooSlow ?? err;
      } finally {
        stopWatching();
        reply.raw.off("close", onClose);
      }
    },
  );

  app.get<{ Querystring: OperationListQuery }>(
    "/operations",
    {
      schema: {
        querystring: listQuerySchema,
        response: { 200: operationListSchema, 400: errorBodySchema },
      },
      validatorCompiler: () => zodValidator(operationListQueryContract, "querystring"),
    },
    async (request) => {
      const { limit, status, cursor } = request.query;
      const page = await operations.list({
        limit,
        status,
        after: cursor === undefined ? undefined : decodeListCursor(cursor),
        viewer: request.principal,
      });
      const last = page.operations.at(-1);
      return {
        operations: page.operations,
        ...(page.more && last ? { nextCursor: encodeListCursor(last.id) } : {}),
      };
    },
  );

  app.get<{ Params: { id: string } }>(
    "/operations/:id",
    {
      schema: { params: operationParamsSchema, response: { 200: operationViewSchema, ...errors } },
    },
    async (request) => operations.get(request.params.id, undefined, request.principal),
  );

  app.get<{ Params: { id: string } }>(
    "/operations/:id/result",
    { schema: { params: operationParamsSchema, response: errors } },
    async (request, reply) => {
      const { stream, filename } = await operations.openResult(
        request.params.id,
        undefined,
        request.principal,
      );
      return reply
        .header("content-type", XLSX_CONTENT_TYPE)
        .header("content-disposition", `attachment; filename="${filename}"`)
        .send(stream);
    },
  );

  app.patch<{ Params: { id: string } }>(
    "/operations/:id",
    {
      schema: { params: operationParamsSchema, response: { 200: operationViewSchema, ...errors } },
    },
    async (request) =>
      operations.updateCaps(request.params.id, request.body, undefined, request.principal),
  );

  app.delete<{ Params: { id: string } }>(
    "/operations/:id",
    { schema: { params: operationParamsSchema, response: errors } },
    async (request, reply) => {
      await operations.delete(request.params.id, undefined, request.principal);
      return reply.code(204).send();
    },
  );

  app.get<{ Params: { id: string }; Querystring: { format: "json" | "csv" | "xlsx" | "svg" } }>(
    "/operations/:id/cost",
    {
      schema: {
        params: operationParamsSchema,
        querystring: costQuerySchema,
        // 200 serializes the JSON report only: CSV, xlsx and SVG are sent as text or bytes.
        response: { 200: costReportSchema, ...errors },
      },
    },
    async (request, reply) => {
      if (!opts.cost) throw new NotFoundError("cost reports are not enabled on this scheduler");
      // Another tenant's operation answers 404 exactly as an unknown one.
      await operations.authorize(request.params.id, request.principal);
      // The report's own zod schema is the contract: validated when written and read, and
      // the 200 serializer.
      const report = await opts.cost.get(request.params.id);
      const { format } = request.query;
      if (format === "json") return report;
      if (format === "svg") {
        return reply.header("content-type", "image/svg+xml").send(costChartSvg(report));
      }
      const name = `${report.operationId}-cost.${format}`;
      reply.header("content-disposition", `attachment; filename="${name}"`);
      if (format === "csv") {
        return reply.header("content-type", "text/csv; charset=utf-8").send(costCsv(report));
      }
      return reply.header("content-type", XLSX_CONTENT_TYPE).send(await costXlsx(report));
    },
  );
};
