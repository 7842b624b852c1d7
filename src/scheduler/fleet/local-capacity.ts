/**
 * The local capacity adapter: the capacity port over the local stack's EC2 stand-in
 * (src/local/local-ec2.ts), a JSON HTTP service in the stack process that starts worker child
 * processes as instances. The fleet manager and the policy are the same as on AWS; only this
 * adapter differs.
 *
 * Errors follow the port: a 4xx answer (a request the service refuses) is a CapacityConfigError —
 * retrying cannot help; a network fault, timeout or 5xx is a RetryableError — retry the same
 * request (same client token: the service answers a repeated token with the first result).
 */
import { Agent, type Dispatcher, request } from "undici";
import type { z } from "zod";
import {
  CapacityConfigError,
  type CapacityProvider,
  type InstanceFilter,
  type InstanceInfo,
  type LaunchRequest,
  type LaunchResult,
  type Pool,
} from "../../shared/capacity.ts";
import { ConfigError, RetryableError, ShardfleetError } from "../../shared/errors.ts";
import {
  describeResultSchema,
  launchResultSchema,
  localEc2ErrorSchema,
  terminateResultSchema,
} from "../../shared/schemas/local-ec2.ts";
import type { PriceTable } from "./policy.ts";

/** The one local instance type: a worker child process. */
export const LOCAL_INSTANCE_TYPE = "local.small";

/** The local pools: one type in two simulated availability zones (so fallback has somewhere to go). */
export const LOCAL_POOLS: readonly Pool[] = Object.freeze([
  { instanceType: LOCAL_INSTANCE_TYPE, availabilityZone: "local-1a" },
  { instanceType: LOCAL_INSTANCE_TYPE, availabilityZone: "local-1b" },
]);

/**
 * The simulated price list of the local stack (USD per instance-hour): spot at 30% of
 * on-demand, roughly where spot sits for compute instances. Used for the budget cap locally.
 */
export const LOCAL_PRICES: PriceTable = Object.freeze({
  spot: Object.freeze({ [LOCAL_INSTANCE_TYPE]: 0.03 }),
  "on-demand": Object.freeze({ [LOCAL_INSTANCE_TYPE]: 0.1 }),
});

export interface LocalCapacityDeps {
  /** HTTP dispatcher. @default a private keep-alive Agent (closed by `close()`) */
  dispatcher?: Dispatcher;
}

export interface LocalCapacityOptions {
  /** The local EC2 service, e.g. http://127.0.0.1:PORT (SHARDFLEET_LOCAL_EC2_URL). */
  url: string;
  /** Per-call timeout. @default 30000 (a launch starts processes) */
  timeoutMs?: number;
}

export class LocalCapacity implements CapacityProvider {
  readonly url: string;
  readonly #dispatcher: Dispatcher;
  readonly #ownDispatcher: boolean;
  readonly #timeoutMs: number;

  constructor(deps: LocalCapacityDeps, options: LocalCapacityOptions) {
    let url: URL;
    try {
      url = new URL(options.url);
    } catch {
      throw new ConfigError(
        `SHARDFLEET_LOCAL_EC2_URL is not a URL: ${JSON.stringify(options.url)}`,
        {
          details: { setting: "SHARDFLEET_LOCAL_EC2_URL" },
        },
      );
    }
    this.url = url.origin;
    this.#ownDispatcher = deps.dispatcher === undefined;
    this.#dispatcher = deps.dispatcher ?? new Agent({ keepAliveTimeout: 10_000 });
    this.#timeoutMs = options.timeoutMs ?? 30_000;
  }

  async launch(req: LaunchRequest, signal?: AbortSignal): Promise<LaunchResult> {
    const out = await this.#call("/launch", req, launchResultSchema, signal);
    return {
      launched: out.launched,
      errors: out.errors,
      ...(out.requestId ? { requestId: out.requestId } : {}),
    };
  }

  async terminate(instanceIds: readonly string[], signal?: AbortSignal): Promise<void> {
    if (instanceIds.length === 0) return;
    await this.#call("/terminate", { ids: instanceIds }, terminateResultSchema, signal);
  }

  async describe(filter: InstanceFilter, signal?: AbortSignal): Promise<InstanceInfo[]> {
    const out = await this.#call("/describe", { tags: filter.tags }, describeResultSchema, signal);
    return out.instances;
  }

  /** Closes the private connection pool (not a dispatcher passed in). */
  async close(): Promise<void> {
    if (this.#ownDispatcher) await this.#dispatcher.close();
  }

  async #call<S extends z.ZodType>(
    path: string,
    body: unknown,
    schema: S,
    signal?: AbortSignal,
  ): Promise<z.infer<S>> {
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    let res: Dispatcher.ResponseData;
    try {
      res = await request(`${this.url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        dispatcher: this.#dispatcher,
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (err) {
      if (signal?.aborted) throw signal.reason ?? err;
      throw new RetryableError(
        `local EC2 at ${this.url} unreachable (${(err as { code?: string }).code ?? (err as Error).message})`,
        { cause: err },
      );
    }
    const text = await res.body.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (res.statusCode >= 400) {
      const parsed = localEc2ErrorSchema.safeParse(json);
      const code = parsed.success ? parsed.data.error.code : `HTTP${res.statusCode}`;
      const message = parsed.success ? parsed.data.error.message : text.slice(0, 200);
      if (res.statusCode >= 500 || res.statusCode === 429) {
        throw new RetryableError(`local EC2 ${path}: ${code}: ${message}`, {
          details: { code, status: res.statusCode },
        });
      }
      throw new CapacityConfigError("config", code, `local EC2 ${path}: ${code}: ${message}`, {
        details: { status: res.statusCode },
      });
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      throw new ShardfleetError(
        "INTERNAL",
        `local EC2 ${path} answered a body that does not fit its schema: ${parsed.error.issues[0]?.message}`,
      );
    }
    return parsed.data;
  }
}
