/**
 * JSON schemas of the API's bodies and parameters. Response schemas come from the shared zod
 * contracts (`src/shared/contracts/`), so the API and its clients read one declaration; they
 * double as documentation and as fastify's serializer (fields not listed are never sent).
 */
import { z } from "zod";
import { errorBodySchema as errorBodyContract } from "../../shared/contracts/api.ts";
import {
  acceptedSchema as acceptedContract,
  operationListSchema as operationListContract,
  operationListQuerySchema as operationListQueryContract,
  operationViewSchema as operationViewContract,
} from "../../shared/contracts/operations.ts";
import { costReportSchema as costReportContract } from "../../shared/schemas/cost.ts";

/**
 * A zod contract as a route's JSON schema: draft-07 (what fastify's Ajv and fast-json-stringify
 * speak), without `$schema` (a route schema is embedded, not a document).
 */
export function routeSchema(
  schema: z.ZodType,
  io: "input" | "output" = "output",
): Record<string, unknown> {
  const { $schema: _, ...json } = z.toJSONSchema(schema, { target: "draft-7", io });
  return json;
}

export const operationParamsSchema = {
  type: "object",
  required: ["id"],
  properties: { id: { type: "string" } },
} as const;

/**
 * `GET /operations` query, documented from its zod contract (input side: `limit` as sent). The
 * route validates with the contract itself (`zodValidator`): Ajv's defaults would drop an
 * unknown parameter in silence.
 */
export const listQuerySchema = routeSchema(operationListQueryContract, "input");

/**
 * A route validator that parses with a zod contract; a failure is a 400 naming the field
 * (`querystring.limit: …`), through the API's error handler.
 */
export function zodValidator(
  contract: z.ZodType,
  part: string,
): (data: unknown) => { value: unknown } | { error: Error } {
  return (data) => {
    const parsed = contract.safeParse(data);
    if (parsed.success) return { value: parsed.data };
    const issue = parsed.error.issues[0];
    const path = [part, ...(issue?.path ?? []).map(String)].join(".");
    const keys = issue?.code === "unrecognized_keys" ? ` (${issue.keys.join(", ")})` : "";
    return { error: new Error(`${path}: ${issue?.message ?? "invalid"}${keys}`) };
  };
}

export const acceptedSchema = routeSchema(acceptedContract);
export const operationViewSchema = routeSchema(operationViewContract);
export const operationListSchema = routeSchema(operationListContract);
export const errorBodySchema = routeSchema(errorBodyContract);
/** The cost report as stored and served (`format=json`). */
export const costReportSchema = routeSchema(costReportContract);

/** `GET /operations/:id/cost`: the report as JSON, a CSV or xlsx download, or an SVG chart. */
export const costQuerySchema = {
  type: "object",
  properties: { format: { type: "string", enum: ["json", "csv", "xlsx", "svg"], default: "json" } },
  additionalProperties: false,
} as const;
