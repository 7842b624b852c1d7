/**
 * The scheduler API as the CLI sees it. Every failure becomes a CliError with one line that
 * says what went wrong (the API's own message when it sent one).
 */
import { openAsBlob } from "node:fs";
import { stat } from "node:fs/promises";
import path from "node:path";
import type { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { FormData, request } from "undici";
import type { z } from "zod";
import { type Whoami, whoamiSchema } from "../shared/contracts/api.ts";
import {
  type Accepted,
  acceptedSchema,
  type CapsPatch,
  type OperationList,
  type OperationView,
  operationListSchema,
  operationViewSchema,
  type RetryRequest,
} from "../shared/contracts/operations.ts";
import { type CostReport, costReportSchema } from "../shared/schemas/cost.ts";
import { CliError, EXIT } from "./cli-error.ts";

export type { OperationView, Whoami };

export const DEFAULT_API_URL = "http://127.0.0.1:8080";

export interface ApiClientOptions {
  /** Sent as `Authorization: Bearer <token>`. @default none (an API without tokens) */
  token?: string;
}

type HttpMethod = "GET" | "POST" | "PATCH" | "DELETE";

/** A JSON request body (sent with its content type). */
class JsonBody {
  readonly text: string;
  constructor(value: unknown) {
    this.text = JSON.stringify(value);
  }
}

export class ApiClient {
  readonly baseUrl: string;
  readonly #headers: Record<string, string>;

  constructor(baseUrl: string = DEFAULT_API_URL, options: ApiClientOptions = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.#headers = options.token ? { authorization: `Bearer ${options.token}` } : {};
  }

  async #call(method: HttpMethod, urlPath: string, body?: FormData | JsonBody) {
    try {
      if (body instanceof JsonBody) {
        return await request(`${this.baseUrl}${urlPath}`, {
          method,
          body: body.text,
          headers: { ...this.#headers, "content-type": "application/json" },
        });
      }
      return await request(`${this.baseUrl}${urlPath}`, { method, body, headers: this.#headers });
    } catch (err) {
      const code = (err as { code?: string }).code ?? (err as Error).message;
      throw new CliError(
        `cannot reach the shardfleet API at ${this.baseUrl} (${code}); is it running? (shardfleet local)`,
        EXIT.unavailable,
        { transient: true },
      );
    }
  }

  async #json<S extends z.ZodType>(
    schema: S,
    method: HttpMethod,
    urlPath: string,
    body?: FormData | JsonBody,
  ): Promise<z.output<S>> {
    const res = await this.#call(method, urlPath, body);
    const text = await res.body.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new CliError(
        `the API answered ${res.statusCode} with a body that is not JSON`,
        EXIT.failed,
        // A proxy's error page in front of a restarting scheduler.
        { transient: res.statusCode >= 500 },
      );
    }
    if (res.statusCode >= 400)
      throw apiError(res.statusCode, parsed, "authorization" in this.#headers);
    // The API's own contract: a body that does not match it is a version mismatch, said once.
    const checked = schema.safeParse(parsed);
    if (!checked.success) {
      const issue = checked.error.issues[0];
      const where = issue?.path.length ? issue.path.join(".") : "(root)";
      throw new CliError(
        `the API answered ${method} ${urlPath} with a body this CLI does not understand (${where}: ${issue?.message ?? "invalid"}); are the CLI and scheduler the same version?`,
        EXIT.failed,
      );
    }
    return checked.data;
  }

  /** Streams the file to `POST /operations`. */
  async submit(file: string, spec: unknown): Promise<Accepted> {
    try {
      await stat(file);
    } catch {
      throw new CliError(`cannot read ${file}: no such file`, EXIT.usage);
    }
    const form = new FormData();
    form.append("spec", JSON.stringify(spec));
    form.append("file", await openAsBlob(file), path.basename(file));
    return this.#json(acceptedSchema, "POST", "/operations", form);
  }

  get(id: string): Promise<OperationView> {
    return this.#json(operationViewSchema, "GET", `/operations/${encodeURIComponent(id)}`);
  }

  /** The operation's cost report (409 until it has finished). */
  cost(id: string): Promise<CostReport> {
    return this.#json(costReportSchema, "GET", `/operations/${encodeURIComponent(id)}/cost`);
  }

  /** Who the token belongs to: `GET /whoami`. */
  whoami(): Promise<Whoami> {
    return this.#json(whoamiSchema, "GET", "/whoami");
  }

  /** `GET /operations`: a page, newest first (`nextCursor` fetches the next one). */
  list(
    query: { limit?: number; status?: string | undefined; cursor?: string | undefined } = {},
  ): Promise<OperationList> {
    const params = new URLSearchParams({ limit: String(query.limit ?? 20) });
    if (query.status !== undefined) params.set("status", query.status);
    if (query.cursor !== undefined) params.set("cursor", query.cursor);
    return this.#json(operationListSchema, "GET", `/operations?${params}`);
  }

  /** The URL and headers of `GET /operations/:id/events`, for an EventSource. */
  events(id: string): { url: string; headers: Record<string, string> } {
    return {
      url: `${this.baseUrl}/operations/${encodeURIComponent(id)}/events`,
      headers: { ...this.#headers },
    };
  }

  /** Streams the cost report as CSV, xlsx or SVG to the sink `open` makes. */
  downloadCost(id: string, format: "csv" | "xlsx" | "svg", open: () => Writable): Promise<void> {
    return this.#download(`/operations/${encodeURIComponent(id)}/cost?format=${format}`, open);
  }

  /** `PATCH /operations/:id`: changes the operation's own caps; answers its view. */
  patch(id: string, caps: CapsPatch): Promise<OperationView> {
    const urlPath = `/operations/${encodeURIComponent(id)}`;
    return this.#json(operationViewSchema, "PATCH", urlPath, new JsonBody(caps));
  }

  /** `DELETE /operations/:id`: every object of a finished operation (409 while it runs). */
  async remove(id: string): Promise<void> {
    const urlPath = `/operations/${encodeURIComponent(id)}`;
    const res = await this.#call("DELETE", urlPath);
    const text = await res.body.text();
    if (res.statusCode < 400) return;
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // keep the raw text
    }
    throw apiError(res.statusCode, parsed, "authorization" in this.#headers);
  }

  /**
   * `POST /operations/:id/cancel|pause|resume`: the view after the change (also when the
   * operation was in that state already); a state that does not allow it is a 409, said once.
   */
  /**
   * `POST /operations/:id/retry`: runs the failed rows of a finished operation again, with the
   * task options in `request.options` changed; answers its view (202).
   */
  retry(id: string, request: RetryRequest = {}): Promise<OperationView> {
    const urlPath = `/operations/${encodeURIComponent(id)}/retry`;
    return this.#json(operationViewSchema, "POST", urlPath, new JsonBody(request));
  }

  control(id: string, action: "cancel" | "pause" | "resume"): Promise<OperationView> {
    return this.#json(
      operationViewSchema,
      "POST",
      `/operations/${encodeURIComponent(id)}/${action}`,
    );
  }

  /** Streams the result to the sink `open` makes, called only once the API answered with it. */
  download(id: string, open: () => Writable): Promise<void> {
    return this.#download(`/operations/${encodeURIComponent(id)}/result`, open);
  }

  async #download(urlPath: string, open: () => Writable): Promise<void> {
    const res = await this.#call("GET", urlPath);
    if (res.statusCode >= 400) {
      const text = await res.body.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // keep the raw text
      }
      throw apiError(res.statusCode, parsed, "authorization" in this.#headers);
    }
    await pipeline(res.body, open());
  }
}

function apiError(status: number, body: unknown, tokenSent: boolean): CliError {
  const message =
    (body as { error?: { message?: string } } | undefined)?.error?.message ??
    (body as { message?: string } | undefined)?.message ??
    "no message";
  if (status === 401) {
    return new CliError(
      tokenSent
        ? `the API refused the token (401: ${message}): check SHARDFLEET_API_TOKEN or --token`
        : "the API requires a token (401): set SHARDFLEET_API_TOKEN or --token",
      EXIT.unauthorized,
    );
  }
  return new CliError(`the API refused the request (${status}): ${message}`, EXIT.failed, {
    // A restarting or overloaded scheduler, not a verdict on the request.
    transient: status >= 500 || status === 429,
  });
}
