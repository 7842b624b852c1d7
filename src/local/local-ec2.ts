/**
 * The local stack's EC2 stand-in: a small JSON HTTP service on 127.0.0.1, owned by the stack
 * process, that owns the local instances. The scheduler's fleet manager reaches it through the
 * local capacity adapter (src/scheduler/fleet/local-capacity.ts), exactly as it reaches EC2
 * through CreateFleet; the wire format is src/shared/schemas/local-ec2.ts.
 *
 * - `launch` starts worker child processes through the stack's instance machinery (each with its
 *   own metadata endpoint, marked spot or on-demand), filling the request's pools in order. It is
 *   idempotent per client token, like CreateFleet: a repeated token gets the first answer, and a
 *   repeated token with different parameters is refused (IdempotentParameterMismatch).
 * - A **no-spot-capacity window** (`spotOutage`, or `setSpotCapacity(false)`) makes spot pools
 *   answer InsufficientInstanceCapacity, one error per pool, as EC2 Fleet does — which is what
 *   drives the policy's fallback to other pools, then to on-demand.
 * - `terminate` stops instances gracefully (SIGTERM: the worker drains and releases its shards);
 *   they are `shutting-down` until the process has exited, then `terminated`.
 * - `describe` lists instances by tags, terminated ones included (EC2 keeps them listed for a
 *   while too): an instance the simulated spot market reclaimed shows up as `terminated`.
 */
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { z } from "zod";
import {
  type CapacityError,
  type InstanceInfo,
  type InstanceState,
  type LaunchedInstance,
  type LaunchRequest,
  type LaunchResult,
  type Market,
  poolLabel,
} from "../shared/capacity.ts";
import type { Clock } from "../shared/clock.ts";
import type { Logger } from "../shared/logger.ts";
import {
  describeRequestSchema,
  launchRequestSchema,
  terminateRequestSchema,
} from "../shared/schemas/local-ec2.ts";

/** One local instance as local EC2 needs it (the stack's LocalInstance fits). */
export interface LocalEc2Instance {
  readonly name: string;
  /** The stack's view: running → (noticed →) gone, or stopped once stopped on purpose. */
  readonly state: "running" | "noticed" | "gone" | "stopped";
  /** SIGTERM, then SIGKILL after a grace period; resolves once the process has exited. */
  terminate(): Promise<void>;
}

export interface LocalEc2Deps {
  /** Starts one worker instance (the stack's machinery: process + metadata endpoint). */
  startInstance(spec: {
    market: Market;
    instanceType: string;
    availabilityZone: string;
  }): Promise<LocalEc2Instance>;
  logger: Logger;
  clock: Clock;
}

export interface LocalEc2Options {
  /** TCP port on 127.0.0.1. @default 0 (a free port) */
  port?: number;
  /**
   * A window without spot capacity, in ms since local EC2 started: spot launches in it get
   * InsufficientInstanceCapacity for every pool. @default none
   */
  spotOutage?: { fromMs: number; toMs: number };
  /** Instances alive at once (the account's limit): beyond it, InstanceLimitExceeded. @default 50 */
  maxInstances?: number;
}

export interface LocalEc2 {
  /** e.g. http://127.0.0.1:PORT — the value for SHARDFLEET_LOCAL_EC2_URL. */
  readonly url: string;
  launch(request: LaunchRequest): Promise<LaunchResult>;
  terminate(ids: readonly string[]): string[];
  describe(tags: Record<string, string>): InstanceInfo[];
  /**
   * Overrides the outage window: false = no spot capacity from now on, true = capacity back,
   * undefined = follow `spotOutage` again.
   */
  setSpotCapacity(available: boolean | undefined): void;
  /** Whether a spot launch now would find capacity. */
  spotAvailable(): boolean;
  /** Stops answering (launches get 503); instances are the stack's to stop. */
  close(): Promise<void>;
}

/** A request local EC2 refuses: 400 with EC2's code. */
class RequestError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

interface Record_ {
  id: string;
  market: Market;
  instanceType: string;
  availabilityZone: string;
  subnetId?: string;
  launchedAt: number;
  tags: Record<string, string>;
  instance: LocalEc2Instance;
  terminating: boolean;
}

const BODY_LIMIT = 1 << 20;

export async function startLocalEc2(
  deps: LocalEc2Deps,
  options: LocalEc2Options = {},
): Promise<LocalEc2> {
  const fleet = new LocalFleet(deps, options);
  const log = deps.logger.child({ module: "local-ec2" });
  const server = createServer((req, res) => {
    handle(fleet, req, res).catch((err: unknown) => {
      log.error({ err }, "local EC2 request failed");
      if (!res.headersSent)
        send(res, 500, { error: { code: "InternalError", message: String(err) } });
    });
  });
  const port = await listen(server, options.port ?? 0);
  const url = `http://127.0.0.1:${port}`;
  log.info(
    { url, spotOutage: options.spotOutage, maxInstances: fleet.maxInstances },
    "local EC2 listening",
  );

  let closed: Promise<void> | undefined;
  return {
    url,
    launch: (request) => fleet.launch(request),
    terminate: (ids) => fleet.terminate(ids),
    describe: (tags) => fleet.describe(tags),
    setSpotCapacity: (available) => fleet.setSpotCapacity(available),
    spotAvailable: () => fleet.spotAvailable(),
    close() {
      fleet.closing = true;
      closed ??= new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
      return closed;
    },
  };
}

/** The instances local EC2 owns and what EC2 would answer about them. */
class LocalFleet {
  readonly maxInstances: number;
  /** Set on close: launches are refused. */
  closing = false;
  readonly #deps: LocalEc2Deps;
  readonly #log: Logger;
  readonly #spotOutage: LocalEc2Options["spotOutage"];
  readonly #startedAt: number;
  readonly #records = new Map<string, Record_>();
  readonly #tokens = new Map<string, { fingerprint: string; result: Promise<LaunchResult> }>();
  #spotOverride: boolean | undefined;
  #serial: Promise<unknown> = Promise.resolve();
  #requests = 0;

  constructor(deps: LocalEc2Deps, options: LocalEc2Options) {
    this.#deps = deps;
    this.#log = deps.logger.child({ module: "local-ec2" });
    this.#spotOutage = options.spotOutage;
    this.#startedAt = deps.clock.now();
    this.maxInstances = options.maxInstances ?? 50;
  }

  spotAvailable(): boolean {
    if (this.#spotOverride !== undefined) return this.#spotOverride;
    const outage = this.#spotOutage;
    if (!outage) return true;
    const t = this.#deps.clock.now() - this.#startedAt;
    return !(t >= outage.fromMs && t < outage.toMs);
  }

  setSpotCapacity(available: boolean | undefined): void {
    this.#spotOverride = available;
    this.#log.info({ available }, "spot capacity set");
  }

  /** Idempotent per client token, one launch at a time (so the instance limit holds). */
  launch(req: LaunchRequest): Promise<LaunchResult> {
    if (this.closing)
      return Promise.reject(new RequestError("Unavailable", "local EC2 is stopping", 503));
    const fingerprint = createHash("sha256")
      .update(JSON.stringify([req.market, req.count, req.pools, req.tags]))
      .digest("hex");
    const seen = this.#tokens.get(req.clientToken);
    if (seen) {
      if (seen.fingerprint !== fingerprint) {
        return Promise.reject(
          new RequestError(
            "IdempotentParameterMismatch",
            `client token ${req.clientToken} was used before with different parameters`,
          ),
        );
      }
      return seen.result;
    }
    const result = this.#serial.then(() => this.#launchNow(req));
    this.#serial = result.catch(() => undefined);
    this.#tokens.set(req.clientToken, { fingerprint, result });
    return result;
  }

  terminate(ids: readonly string[]): string[] {
    const known: string[] = [];
    for (const id of ids) {
      const r = this.#records.get(id);
      if (!r) continue;
      known.push(id);
      if (r.terminating || stateOf(r) === "terminated") continue;
      r.terminating = true;
      this.#log.info({ instanceId: id }, "terminating");
      r.instance.terminate().catch((err: unknown) => {
        this.#log.error({ err, instanceId: id }, "could not stop an instance");
      });
    }
    return known;
  }

  describe(tags: Record<string, string>): InstanceInfo[] {
    return [...this.#records.values()]
      .filter((r) => Object.entries(tags).every(([k, v]) => r.tags[k] === v))
      .map((r) => ({
        instanceId: r.id,
        market: r.market,
        instanceType: r.instanceType,
        availabilityZone: r.availabilityZone,
        state: stateOf(r),
        launchedAt: r.launchedAt,
        tags: { ...r.tags },
      }));
  }

  #liveCount(): number {
    return [...this.#records.values()].filter((r) => stateOf(r) !== "terminated").length;
  }

  /** Fills the request's pools in order, one error per pool that cannot give capacity. */
  async #launchNow(req: LaunchRequest): Promise<LaunchResult> {
    const launched: LaunchedInstance[] = [];
    const errors: CapacityError[] = [];
    for (const pool of req.pools) {
      const remaining = req.count - launched.length;
      if (remaining === 0) break;
      if (req.market === "spot" && !this.spotAvailable()) {
        errors.push({
          pool,
          market: "spot",
          code: "InsufficientInstanceCapacity",
          message: `There is no Spot capacity available that matches your request (${poolLabel(pool)}; simulated outage).`,
          kind: "capacity",
        });
        continue;
      }
      const room = this.maxInstances - this.#liveCount();
      if (room <= 0) {
        errors.push({
          market: req.market,
          code: "InstanceLimitExceeded",
          message: `You have requested more instances than your current instance limit of ${this.maxInstances} allows.`,
          kind: "capacity",
        });
        break;
      }
      const filled = await this.#startInPool(req, pool, Math.min(remaining, room));
      launched.push(...filled.launched);
      // An instance that would not start ends its pool; the next pool is tried.
      if (filled.error) errors.push(filled.error);
    }
    const requestId = `fleet-local-${String(++this.#requests).padStart(4, "0")}`;
    this.#log.info(
      {
        requestId,
        clientToken: req.clientToken,
        market: req.market,
        requested: req.count,
        launched: launched.map((i) => i.instanceId),
        errors: errors.map((e) => `${e.code}${e.pool ? ` ${poolLabel(e.pool)}` : ""}`),
      },
      "launch",
    );
    return { launched, errors, requestId };
  }

  /** Starts up to `n` instances in one pool; stops at the first that cannot start. */
  async #startInPool(
    req: LaunchRequest,
    pool: LaunchRequest["pools"][number],
    n: number,
  ): Promise<{ launched: LaunchedInstance[]; error?: CapacityError }> {
    const launched: LaunchedInstance[] = [];
    const availabilityZone = pool.availabilityZone ?? "local-1a";
    for (let k = 0; k < n; k++) {
      let instance: LocalEc2Instance;
      try {
        instance = await this.#deps.startInstance({
          market: req.market,
          instanceType: pool.instanceType,
          availabilityZone,
        });
      } catch (err) {
        const error: CapacityError = {
          pool,
          market: req.market,
          code: "InternalError",
          message: `could not start a local instance: ${(err as Error).message}`,
          kind: "other",
        };
        return { launched, error };
      }
      const record: Record_ = {
        id: instance.name,
        market: req.market,
        instanceType: pool.instanceType,
        availabilityZone,
        ...(pool.subnetId ? { subnetId: pool.subnetId } : {}),
        launchedAt: this.#deps.clock.now(),
        tags: { ...req.tags },
        instance,
        terminating: false,
      };
      this.#records.set(record.id, record);
      launched.push({
        instanceId: record.id,
        market: record.market,
        instanceType: record.instanceType,
        availabilityZone,
        ...(record.subnetId ? { subnetId: record.subnetId } : {}),
        launchedAt: record.launchedAt,
      });
    }
    return { launched };
  }
}

function stateOf(r: Record_): InstanceState {
  if (r.instance.state === "gone" || r.instance.state === "stopped") return "terminated";
  return r.terminating ? "shutting-down" : "running";
}

/** Routes one request: GET /healthz, POST /launch, /terminate, /describe. */
async function handle(fleet: LocalFleet, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? "/", "http://local-ec2");
  if (req.method === "GET" && url.pathname === "/healthz") return send(res, 200, { ok: true });
  if (req.method !== "POST") {
    return send(res, 405, {
      error: { code: "MethodNotAllowed", message: `${req.method} ${url.pathname}` },
    });
  }
  try {
    switch (url.pathname) {
      case "/launch":
        return send(
          res,
          200,
          await fleet.launch(parseBody(await readBody(req), launchRequestSchema)),
        );
      case "/terminate":
        return send(res, 200, {
          terminating: fleet.terminate(parseBody(await readBody(req), terminateRequestSchema).ids),
        });
      case "/describe":
        return send(res, 200, {
          instances: fleet.describe(parseBody(await readBody(req), describeRequestSchema).tags),
        });
      default:
        return send(res, 404, {
          error: { code: "NotFound", message: `no route ${url.pathname}` },
        });
    }
  } catch (err) {
    if (err instanceof RequestError) {
      return send(res, err.status, { error: { code: err.code, message: err.message } });
    }
    throw err;
  }
}

/** Listens on 127.0.0.1:`port` (0: a free one); resolves with the port. */
async function listen(server: Server, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  return typeof address === "object" && address ? address.port : 0;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > BODY_LIMIT) throw new RequestError("RequestTooLarge", "body over 1 MiB", 413);
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf-8"));
  } catch {
    throw new RequestError("InvalidParameterValue", "the body is not JSON");
  }
}

function parseBody<S extends z.ZodType>(body: unknown, schema: S): z.infer<S> {
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.map(String).join(".") || "(body)";
    throw new RequestError("InvalidParameterValue", `${where}: ${issue.message}`);
  }
  return parsed.data;
}
