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
import { CliError, EXIT } from "./cli-error.ts";

export const DEFAULT_API_URL = "http://127.0.0.1:8080";

/** What `GET /operations/:id` returns (the fields the CLI reads). */
export interface OperationView {
  id: string;
  /** Whose operation it is (APIs with tenants). */
  tenant?: string;
  name?: string;
  status: string;
  task?: string;
  rows: { total: number | null; done: number; failed: number };
  shards: { total: number | null; pending: number; running: number; done: number; failed: number };
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  error?: { code: string; message: string };
  result?: { rows: number; errorRows: number; columns: string[] };
  /** While waiting-for-capacity. */
  waiting?: { since: string; reason: string };
  /** Instances launched for it (fleet mode; `since`: when it entered its state). */
  instances?: {
    id: string;
    market: string;
    type: string;
    role?: string;
    state: string;
    since: string;
    launchedAt?: string;
    endReason?: string;
    interruptionWarnedAt?: string;
    rebalanceRecommendedAt?: string;
  }[];
  /** Fleet events, oldest first. */
  events?: { at: string; kind: string; message: string }[];
  /** http-enrich while running: what its source sees, per origin. */
  source?: {
    origin: string;
    workers: number;
    requestsPerSecond: number;
    budget: number | null;
    concurrency: number;
    inFlight: number;
    requests: number;
    throttled: number;
    failed: number;
  }[];
}

/** What `GET /whoami` returns. */
export interface Whoami {
  tenant: string;
  role: string;
  caps: { maxOperations?: number; maxInstances?: number; maxHourlyUsd?: number };
}

export interface ApiClientOptions {
  /** Sent as `Authorization: Bearer <token>`. @default none (an API without tokens) */
  token?: string;
}

export class ApiClient {
  readonly baseUrl: string;
  readonly #headers: Record<string, string>;

  constructor(baseUrl: string = DEFAULT_API_URL, options: ApiClientOptions = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.#headers = options.token ? { authorization: `Bearer ${options.token}` } : {};
  }

  async #call(method: "GET" | "POST", urlPath: string, body?: FormData) {
    try {
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

  async #json<T>(method: "GET" | "POST", urlPath: string, body?: FormData): Promise<T> {
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
    return parsed as T;
  }

  /** Streams the file to `POST /operations`. */
  async submit(file: string, spec: unknown): Promise<{ id: string; status: string }> {
    try {
      await stat(file);
    } catch {
      throw new CliError(`cannot read ${file}: no such file`, EXIT.usage);
    }
    const form = new FormData();
    form.append("spec", JSON.stringify(spec));
    form.append("file", await openAsBlob(file), path.basename(file));
    return this.#json("POST", "/operations", form);
  }

  get(id: string): Promise<OperationView> {
    return this.#json("GET", `/operations/${encodeURIComponent(id)}`);
  }

  /** The operation's cost report (409 until it has finished). */
  cost(id: string): Promise<unknown> {
    return this.#json("GET", `/operations/${encodeURIComponent(id)}/cost`);
  }

  /** Who the token belongs to: `GET /whoami`. */
  whoami(): Promise<Whoami> {
    return this.#json("GET", "/whoami");
  }

  list(limit = 20): Promise<{ operations: OperationView[] }> {
    return this.#json("GET", `/operations?limit=${limit}`);
  }

  /** Streams the result to the sink `open` makes, called only once the API answered with it. */
  async download(id: string, open: () => Writable): Promise<void> {
    const res = await this.#call("GET", `/operations/${encodeURIComponent(id)}/result`);
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
