/**
 * The local stack: the whole system on one machine. A real SQS/S3-compatible server on
 * 127.0.0.1, the bucket and queues, and optionally the scheduler and "instances" (worker child
 * processes) running the same entry points as in AWS; only endpoints differ.
 *
 * Two capacity modes:
 * - `static` (default): the stack starts N instances and replaces any that is lost;
 * - `fleet`: the stack starts none. It runs local EC2 (./local-ec2.ts), and the scheduler's fleet
 *   manager launches and terminates instances through it, as it would through EC2 — spot
 *   batches, capacity errors (an optional no-spot-capacity window), on-demand fallback,
 *   stragglers, scale-in. Lost instances are not replaced by the stack: the fleet manager
 *   re-plans.
 *
 * A spot notice is published twice, as on AWS: on the instance's metadata endpoint (its worker
 * drains) and as an EventBridge-shaped event on the spot events queue (the scheduler's fleet
 * manager replaces the instance early). A kill without notice sends nothing.
 */
import { createWriteStream, mkdirSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { request } from "undici";
import { createAwsClients } from "../shared/aws.ts";
import type { Market } from "../shared/capacity.ts";
import { systemClock } from "../shared/clock.ts";
import { HEALTH_PID_HEADER } from "../shared/contracts/api.ts";
import { createLogger, type Logger } from "../shared/logger.ts";
import { VERSION } from "../shared/version.ts";
import { LOCAL_CREDENTIALS, startLocalAwsServer } from "./aws-server.ts";
import { type LocalImds, startLocalImds } from "./imds.ts";
import { type LocalEc2, startLocalEc2 } from "./local-ec2.ts";
import { type ComponentProcess, spawnComponent } from "./processes.ts";
import { type ProvisionedResources, provisionResources } from "./provision.ts";
import { ec2SpotEvent, type SpotEventInput, sendSpotEvent } from "./spot-events.ts";
import { type ReclaimDecision, SpotMarket, type SpotMarketPolicy } from "./spot-market.ts";

/** A spot notice comes two minutes before the instance is taken. */
export const SPOT_NOTICE_MS = 120_000;

/** One local "instance": a worker process with its own metadata endpoint. */
export interface LocalInstance {
  readonly name: string;
  readonly market: Market;
  /** Reported by its metadata endpoint. @default "local.small" */
  readonly instanceType: string;
  /** Reported by its metadata endpoint. @default "local-1a" */
  readonly availabilityZone: string;
  readonly process: ComponentProcess;
  readonly imds: LocalImds;
  /** running → (noticed →) gone; `stopped` when the stack stopped it. */
  readonly state: "running" | "noticed" | "gone" | "stopped";
  /**
   * Reclaims it as AWS would: with a notice (published on its metadata endpoint and as an
   * EventBridge event on the spot events queue, then SIGKILL after the scaled two minutes unless
   * it has exited by then) or without (SIGKILL now, no event).
   */
  reclaim(withNotice: boolean): void;
  /**
   * Recommends rebalancing it as AWS would: on its metadata endpoint and as an EventBridge event.
   * Advisory: nothing is taken.
   */
  recommendRebalance(): void;
  /** Stops it on purpose (SIGTERM: the worker drains; SIGKILL after a grace period). Never replaced. */
  terminate(): Promise<void>;
}

/** Where instances come from: started by the stack (`static`) or by the fleet manager (`fleet`). */
export type CapacityMode = "static" | "fleet";

/** What `addInstance` may set besides the market. */
export interface InstanceSpec {
  /** @default "local.small" */
  instanceType?: string;
  /** @default "local-1a" */
  availabilityZone?: string;
}

export { LOCAL_CREDENTIALS };
export const LOCAL_REGION = "us-east-1";

export interface LocalStackOptions {
  /** Port of the SQS/S3 server. @default 0 (a free port) */
  awsPort?: number;
  /**
   * Keep the bucket's objects in this folder and load them at start, so a stack started again
   * on it serves what an earlier one wrote (queues are not kept; see README "The local stack's
   * data folder"). One stack per folder at a time.
   * @default none (ephemeral: everything in memory)
   */
  dataDir?: string;
  /** Start the scheduler API (a child process). @default true when workers > 0 or in fleet mode */
  scheduler?: boolean;
  /**
   * `static`: the stack starts `workers` instances and replaces lost ones. `fleet`: local EC2
   * runs and the scheduler's fleet manager launches instances (`workers` must be 0).
   * @default "static"
   */
  capacity?: CapacityMode;
  /** Fleet mode: the fleet manager's instance cap (SHARDFLEET_MAX_INSTANCES). @default 20 */
  maxInstances?: number;
  /** Fleet mode: a window without spot capacity, in ms since the stack started. @default none */
  spotOutage?: { fromMs: number; toMs: number };
  /** Port of the scheduler API. @default 0 (a free port) */
  apiPort?: number;
  /** Worker instances to start. @default 0 */
  workers?: number;
  /** Where component logs go (one file each). @default discarded */
  logDir?: string;
  /** @default "info" */
  logLevel?: string;
  /** Work-queue visibility timeout. @default 60 */
  visibilityTimeoutSeconds?: number;
  /** Extra SHARDFLEET_* settings for every component (e.g. a shorter poll wait in tests). */
  settings?: Record<string, string>;
  /**
   * The non-public task sources components may call: `SHARDFLEET_EGRESS_ALLOW` entries
   * (`host:port`, `address:port`, `cidr`), joined with any in `settings`. Name exactly the
   * sources you start: the stack's own servers (SQS/S3, API, metadata endpoints) are on
   * loopback too and must stay out of a task's reach.
   * @default none (public addresses only)
   */
  egressAllow?: readonly string[];
  /** Bucket name. @default "shardfleet-local" */
  bucket?: string;
  /** Market of the initial instances. @default "spot" */
  market?: Market;
  /** Start a replacement when an instance is reclaimed or dies. @default true (static), false (fleet) */
  replaceLostInstances?: boolean;
  /** Scales simulated time (spot notice lead): 0.05 makes two minutes six seconds. @default 1 */
  timeFactor?: number;
  /** Run the simulated spot market with this policy. @default off */
  spotMarket?: SpotMarketPolicy;
  /** Logger for the stack's own events. @default `stack.log` in logDir, else silent */
  logger?: Logger;
  /**
   * Run the scheduler and workers from the compiled build (`dist/`, `npm run build`) even when
   * the stack itself runs from the TypeScript sources: the benchmarks do, so that tsx compiling
   * every module at each start is not part of what they measure.
   * @default as this module runs (compiled when it is compiled, else the sources through tsx)
   */
  compiled?: boolean;
  /**
   * Puts something between the components (scheduler, workers) and the SQS/S3 server: given the
   * server's endpoint, resolves to the endpoint the components use instead, as their AWS
   * endpoint and as the host of their queue URLs (an SQS client without an explicit endpoint
   * sends to the queue URL's host). The test suite's fault-injecting proxy stands here. The
   * stack's own calls (provisioning, spot events) and `endpoint` stay direct.
   * @default none (the components talk to the server itself)
   */
  interpose?: (serverEndpoint: string) => Promise<string>;
}

export interface LocalStack {
  /** The SQS/S3 endpoint, e.g. http://127.0.0.1:4566 */
  readonly endpoint: string;
  /** With `dataDir`: the folder, and what was loaded from it at start. */
  readonly data:
    | { readonly dir: string; readonly buckets: number; readonly objects: number }
    | undefined;
  readonly region: string;
  readonly resources: ProvisionedResources;
  /** AWS client variables pointing at the local server (for `export` in a shell). */
  readonly clientEnv: Record<string, string>;
  /** Client variables plus every SHARDFLEET_* setting a component needs. */
  readonly componentEnv: Record<string, string>;
  /** The scheduler API URL, when the scheduler runs. */
  readonly apiUrl: string | undefined;
  readonly scheduler: ComponentProcess | undefined;
  /** Every instance started so far, live or gone. */
  readonly instances: LocalInstance[];
  /** The instances whose process still runs. */
  liveInstances(): LocalInstance[];
  /**
   * Resolves once every instance running now has started polling the work queue (its worker
   * asks its metadata endpoint right after its first receive): a benchmark starts its clock
   * there, as the single-process baseline starts its own after its modules have loaded.
   * Rejects after `timeoutMs`.
   */
  instancesUp(timeoutMs?: number): Promise<void>;
  /** Starts one more worker instance. */
  addInstance(market?: Market, spec?: InstanceSpec): Promise<LocalInstance>;
  /** Local EC2, in fleet mode. */
  readonly localEc2: LocalEc2 | undefined;
  /** SIGKILLs the scheduler (it keeps no state S3 does not hold). */
  killScheduler(): Promise<void>;
  /**
   * Starts one more scheduler process on the same bucket and queues, on its own API port, and
   * waits until it answers: a standby while another holds the scheduler lease. Stopped with
   * the stack.
   */
  addScheduler(): Promise<{ readonly process: ComponentProcess; readonly url: string }>;
  /** Starts the scheduler again on the same port and waits until it answers. */
  restartScheduler(): Promise<void>;
  /** The simulated spot market, when enabled. */
  readonly spotMarket: SpotMarket | undefined;
  /** Stops every component (SIGTERM, then SIGKILL after a grace period) and the server. */
  close(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const address = srv.address();
      srv.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/**
 * Waits until `component` answers `url`/healthz. An answer from another process (its pid in the
 * health header is not the component's: an orphan of an earlier stack holding the port) fails
 * at once, naming that process.
 */
async function waitForHealth(url: string, component: ComponentProcess, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  let exited: number | string | undefined;
  void component.exited.then((code) => {
    exited = code;
  });
  while (Date.now() < deadline) {
    // Asked before the exit check: a scheduler that died of EADDRINUSE names the wrong cause.
    let answeredBy: string | undefined;
    try {
      const res = await request(`${url}/healthz`);
      await res.body.dump();
      answeredBy = String(res.headers[HEALTH_PID_HEADER] ?? "");
      if (res.statusCode === 200 && answeredBy === String(component.child.pid)) return;
    } catch {
      // not listening yet
    }
    if (answeredBy !== undefined) {
      throw new Error(
        `${url} is answered by another process (${answeredBy ? `pid ${answeredBy}` : "not a shardfleet scheduler"}), not the scheduler this stack started: an orphan of an earlier stack? Stop it${answeredBy ? ` (kill ${answeredBy})` : ""} or pick another API port`,
      );
    }
    if (exited !== undefined) {
      throw new Error(
        `the scheduler exited (${exited}) before it was ready${component.logFile ? `; see ${component.logFile}` : ""}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the scheduler did not answer ${url}/healthz within ${timeoutMs} ms`);
}

/** What the stack's parts share while it runs. */
interface StackState {
  readonly instances: LocalInstance[];
  scheduler: ComponentProcess | undefined;
  /** Schedulers started by addScheduler. */
  readonly extraSchedulers: ComponentProcess[];
  localEc2: LocalEc2 | undefined;
  /** Set by `close`: nothing is replaced or published any more. */
  closing: boolean;
}

export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  const fleetMode = options.capacity === "fleet";
  if (fleetMode && (options.workers ?? 0) > 0) {
    throw new Error(
      "a fleet-mode local stack starts no workers itself (the fleet manager launches them): drop `workers`",
    );
  }
  if (options.logDir) mkdirSync(options.logDir, { recursive: true });
  const server = await startLocalAwsServer({
    port: options.awsPort ?? 0,
    ...(options.dataDir ? { dataDir: options.dataDir } : {}),
  });
  // Provisioning, then the EventBridge-shaped spot events; destroyed with the stack.
  const clients = createAwsClients({
    endpoint: server.endpoint,
    region: LOCAL_REGION,
    credentials: LOCAL_CREDENTIALS,
  });
  const state: StackState = {
    instances: [],
    scheduler: undefined,
    extraSchedulers: [],
    localEc2: undefined,
    closing: false,
  };
  try {
    const resources = await provisionResources(
      clients,
      { bucket: options.bucket },
      { visibilityTimeoutSeconds: options.visibilityTimeoutSeconds },
    );
    const componentEndpoint = options.interpose
      ? await options.interpose(server.endpoint)
      : server.endpoint;
    const componentResources = throughEndpoint(resources, server.endpoint, componentEndpoint);
    const { clientEnv, componentEnv, settings } = environmentOf(
      componentEndpoint,
      componentResources,
      options,
    );
    const logger = stackLogger(options);
    logger.info({ version: VERSION, node: process.version }, "local stack starting");
    if (options.dataDir && server.loaded) {
      const { unreadable, ...loaded } = server.loaded;
      logger.info({ dataDir: options.dataDir, ...loaded }, "data folder loaded");
      for (const file of unreadable) logger.warn({ file }, "unreadable object file skipped");
    }
    const workers = options.workers ?? 0;
    // Settings only the scheduler reads: the spot events queue (its fleet manager consumes it),
    // and in fleet mode (below) the fleet manager against local EC2.
    const schedulerEnv: Record<string, string> = {
      SHARDFLEET_SPOT_EVENTS_QUEUE_URL: componentResources.queues.spotEvents,
      // One machine: a restarted scheduler need not wait out AWS's 30 s for its predecessor.
      SHARDFLEET_LEASE_S: settings.SHARDFLEET_LEASE_S ?? "10",
    };
    const publishSpotEvent = spotEventPublisher(clients, resources, logger, state);
    const addInstance = instanceStarter(
      { state, logger, publishSpotEvent },
      {
        componentEnv,
        settings,
        logDir: options.logDir,
        ...(options.compiled === undefined ? {} : { compiled: options.compiled }),
        defaultMarket: options.market ?? "spot",
        timeFactor: options.timeFactor ?? 1,
        replace: options.replaceLostInstances ?? !fleetMode,
        // With a data folder: when this start began (base 36 ms), e.g. local-mib2k9x1-001.
        ...(options.dataDir ? { startTag: Date.now().toString(36) } : {}),
      },
    );
    if (fleetMode) {
      state.localEc2 = await startFleetCapacity(addInstance, logger, options);
      Object.assign(schedulerEnv, {
        SHARDFLEET_CAPACITY: "local",
        SHARDFLEET_LOCAL_EC2_URL: state.localEc2.url,
        SHARDFLEET_MAX_INSTANCES: String(options.maxInstances ?? 20),
      });
    }
    let apiUrl: string | undefined;
    let apiPort = 0;
    const startScheduler = async () => {
      state.scheduler = await startSchedulerProcess(
        { ...componentEnv, ...schedulerEnv },
        apiPort,
        options.logDir,
        "scheduler",
        undefined,
        options.compiled,
      );
    };
    if (options.scheduler ?? (workers > 0 || fleetMode)) {
      apiPort = options.apiPort || (await freePort());
      apiUrl = `http://127.0.0.1:${apiPort}`;
      await startScheduler();
    }
    for (let i = 0; i < workers; i++) await addInstance();
    const spotMarket = options.spotMarket
      ? startSpotMarket(options.spotMarket, state.instances, logger)
      : undefined;

    const close = stackCloser(state, spotMarket, () => {
      clients.destroy();
      return server.close();
    });
    return {
      endpoint: server.endpoint,
      data:
        options.dataDir && server.loaded
          ? {
              dir: options.dataDir,
              buckets: server.loaded.buckets,
              objects: server.loaded.objects,
            }
          : undefined,
      region: LOCAL_REGION,
      resources,
      clientEnv,
      componentEnv,
      apiUrl,
      get scheduler() {
        return state.scheduler;
      },
      instances: state.instances,
      spotMarket,
      localEc2: state.localEc2,
      liveInstances: () =>
        state.instances.filter((i) => i.state === "running" || i.state === "noticed"),
      instancesUp: (timeoutMs = 90_000) => instancesUp(state.instances, timeoutMs),
      addInstance,
      async killScheduler() {
        await state.scheduler?.kill();
      },
      async addScheduler() {
        if (state.closing) throw new Error("the stack is closing");
        const port = await freePort();
        const started = await startSchedulerProcess(
          { ...componentEnv, ...schedulerEnv },
          port,
          options.logDir,
          `scheduler-${state.extraSchedulers.length + 2}`,
          (proc) => state.extraSchedulers.push(proc),
          options.compiled,
        );
        return { process: started, url: `http://127.0.0.1:${port}` };
      },
      async restartScheduler() {
        if (!apiUrl) throw new Error("this stack runs no scheduler");
        await state.scheduler?.kill();
        await startScheduler();
      },
      close,
    };
  } catch (err) {
    await state.localEc2?.close();
    await Promise.all(state.instances.map((i) => i.process.kill()));
    await state.scheduler?.kill();
    await Promise.all(state.extraSchedulers.map((s) => s.kill()));
    clients.destroy();
    await server.close();
    throw err;
  }
}

/** The resources with their queue URLs on `to` instead of `from` (the same queues, reached another way). */
function throughEndpoint(
  resources: ProvisionedResources,
  from: string,
  to: string,
): ProvisionedResources {
  if (from === to) return resources;
  const moved = (url: string) =>
    url.startsWith(`${from}/`) ? `${to}${url.slice(from.length)}` : url;
  const { work, straggler, dlq, spotEvents } = resources.queues;
  return {
    bucket: resources.bucket,
    queues: {
      work: moved(work),
      straggler: moved(straggler),
      dlq: moved(dlq),
      spotEvents: moved(spotEvents),
    },
  };
}

/**
 * The AWS client variables for the local server, and every component's settings: the stack's
 * resources, its defaults, `settings` and the egress allow-list joined from both places.
 */
function environmentOf(
  endpoint: string,
  resources: ProvisionedResources,
  options: LocalStackOptions,
): {
  clientEnv: Record<string, string>;
  componentEnv: Record<string, string>;
  settings: Record<string, string>;
} {
  const { SHARDFLEET_EGRESS_ALLOW: settingsAllow, ...settings } = options.settings ?? {};
  const egressAllow = [...(options.egressAllow ?? []), ...(settingsAllow ? [settingsAllow] : [])]
    .join(",")
    .trim();
  const clientEnv = {
    AWS_ENDPOINT_URL: endpoint,
    AWS_REGION: LOCAL_REGION,
    AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
  };
  const componentEnv: Record<string, string> = {
    ...clientEnv,
    SHARDFLEET_BUCKET: resources.bucket,
    SHARDFLEET_WORK_QUEUE_URL: resources.queues.work,
    SHARDFLEET_STRAGGLER_QUEUE_URL: resources.queues.straggler,
    SHARDFLEET_DLQ_URL: resources.queues.dlq,
    SHARDFLEET_LOG_LEVEL: options.logLevel ?? "info",
    SHARDFLEET_VISIBILITY_TIMEOUT_S: String(options.visibilityTimeoutSeconds ?? 60),
    // A busy worker lets its pending long poll finish before it exits (an aborted poll would
    // swallow a message), so a short wait keeps local stops quick.
    SHARDFLEET_POLL_WAIT_S: "2",
    ...settings,
    ...(egressAllow ? { SHARDFLEET_EGRESS_ALLOW: egressAllow } : {}),
  };
  return { clientEnv, componentEnv, settings };
}

/** The stack's own log: the caller's logger, else `stack.log` in logDir, else silent. */
function stackLogger(options: LocalStackOptions): Logger {
  if (options.logger) return options.logger;
  return options.logDir
    ? createLogger({
        destination: createWriteStream(path.join(options.logDir, "stack.log"), { flags: "a" }),
      })
    : createLogger({ level: "silent" });
}

/** Starts the scheduler process on `apiPort` and resolves once it answers its health check. */
async function startSchedulerProcess(
  env: Record<string, string>,
  apiPort: number,
  logDir: string | undefined,
  name = "scheduler",
  /** Told of the process as soon as it is spawned (so the stack stops it even if it never answers). */
  spawned?: (process: ComponentProcess) => void,
  compiled?: boolean,
): Promise<ComponentProcess> {
  const scheduler = spawnComponent("scheduler", {
    name,
    env: { ...env, SHARDFLEET_API_HOST: "127.0.0.1", SHARDFLEET_API_PORT: String(apiPort) },
    logDir,
    ...(compiled === undefined ? {} : { compiled }),
  });
  spawned?.(scheduler);
  try {
    await waitForHealth(`http://127.0.0.1:${apiPort}`, scheduler, 90_000); // a deadline, not a figure: a loaded CI machine starts slowly
  } catch (err) {
    await scheduler.kill();
    throw err;
  }
  return scheduler;
}

type PublishSpotEvent = (input: Omit<SpotEventInput, "region">) => void;

/** What EventBridge would deliver on AWS, sent to the spot events queue (fire and forget). */
function spotEventPublisher(
  clients: ReturnType<typeof createAwsClients>,
  resources: ProvisionedResources,
  logger: Logger,
  state: StackState,
): PublishSpotEvent {
  return (input) => {
    if (state.closing) return;
    const event = ec2SpotEvent({ ...input, region: LOCAL_REGION });
    sendSpotEvent(clients.sqs, resources.queues.spotEvents, event).then(
      () => logger.info({ instanceId: input.instanceId, kind: input.kind }, "spot event sent"),
      (err: unknown) =>
        logger.warn({ err, instanceId: input.instanceId, kind: input.kind }, "spot event not sent"),
    );
  };
}

interface InstanceStarterOptions {
  componentEnv: Record<string, string>;
  settings: Record<string, string>;
  logDir: string | undefined;
  /** Workers from the compiled build (`LocalStackOptions.compiled`). */
  compiled?: boolean;
  defaultMarket: Market;
  timeFactor: number;
  /** Start a replacement when an instance is lost. */
  replace: boolean;
  /**
   * Between `local-` and the number: a data folder outlives the stack, so its records must
   * never name an instance of an earlier start. @default none (`local-001`, …)
   */
  startTag?: string;
}

type AddInstance = (market?: Market, spec?: InstanceSpec) => Promise<LocalInstance>;

/**
 * A worker process that exits by itself (a crash: neither reclaimed, terminated nor stopped with
 * the stack) is started again on the same instance after this pause, as the image's systemd unit
 * does (`Restart=always`): a crash costs a process, not an instance, so a crash-looping shard
 * does not make the fleet manager launch a replacement instance per crash.
 */
const WORKER_RESTART_MS = 1_000;

/** `addInstance`: a metadata endpoint and a worker process, replaced when lost if asked to. */
function instanceStarter(
  deps: { state: StackState; logger: Logger; publishSpotEvent: PublishSpotEvent },
  options: InstanceStarterOptions,
): AddInstance {
  const { state, logger } = deps;
  let nextInstance = 1;
  const addInstance: AddInstance = async (market = options.defaultMarket, spec = {}) => {
    const tag = options.startTag ? `${options.startTag}-` : "";
    const name = `local-${tag}${String(nextInstance++).padStart(3, "0")}`;
    const instanceType = spec.instanceType ?? "local.small";
    const availabilityZone = spec.availabilityZone ?? "local-1a";
    const imds = await startLocalImds({ instanceId: name, market, instanceType, availabilityZone });
    const spawnWorker = () =>
      spawnComponent("worker", {
        name,
        env: {
          ...options.componentEnv,
          SHARDFLEET_INSTANCE_ID: name,
          SHARDFLEET_MARKET: market,
          AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.endpoint,
          // The 5 s IMDS poll scales with the notice lead, or a scaled notice would pass unseen.
          SHARDFLEET_INTERRUPTION_POLL_S: String(Math.max(0.05, 5 * options.timeFactor)),
          ...options.settings,
        },
        logDir: options.logDir,
        ...(options.compiled === undefined ? {} : { compiled: options.compiled }),
      });
    const instance = localInstance(
      { name, market, instanceType, availabilityZone, process: spawnWorker(), imds },
      { publishSpotEvent: deps.publishSpotEvent, timeFactor: options.timeFactor },
    );
    state.instances.push(instance.public);
    const watch = (proc: ComponentProcess): void => {
      void proc.exited.then(async (code) => {
        if (!state.closing && !instance.terminating && instance.public.state === "running") {
          // Crashed by itself: the instance lives on, its worker is started again.
          logger.warn(
            { instanceId: name, code, market, restartInMs: WORKER_RESTART_MS },
            "worker exited by itself; restarting it on the same instance",
          );
          await new Promise((r) => setTimeout(r, WORKER_RESTART_MS));
          if (!state.closing && !instance.terminating && instance.public.state === "running") {
            const next = spawnWorker();
            instance.setProcess(next);
            watch(next);
            return;
          }
        }
        await imds.close();
        if (state.closing || instance.terminating) {
          instance.setState("stopped");
          if (instance.terminating) {
            logger.info({ instanceId: name, code, market }, "instance terminated");
          }
          return;
        }
        logger.info({ instanceId: name, code, market }, "instance gone");
        instance.setState("gone");
        if (options.replace) await addInstance(market);
      });
    };
    watch(instance.public.process);
    logger.info({ instanceId: name, market }, "instance started");
    return instance.public;
  };
  return addInstance;
}

/** `instancesUp`: every instance running now has asked its metadata endpoint (see LocalImds.asked). */
async function instancesUp(instances: readonly LocalInstance[], timeoutMs: number): Promise<void> {
  const waiting = instances.filter((i) => i.state === "running" || i.state === "noticed");
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(
            `instances not polling within ${timeoutMs} ms: ${waiting.map((i) => i.name).join(", ")}`,
          ),
        ),
      timeoutMs,
    );
  });
  try {
    await Promise.race([Promise.all(waiting.map((i) => i.imds.asked)), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A started instance as the stack shows it, with the state only the stack changes. */
function localInstance(
  parts: Pick<
    LocalInstance,
    "name" | "market" | "instanceType" | "availabilityZone" | "process" | "imds"
  >,
  deps: { publishSpotEvent: PublishSpotEvent; timeFactor: number },
): {
  public: LocalInstance;
  readonly terminating: boolean;
  setState(state: LocalInstance["state"]): void;
  /** The worker process started again after a crash. */
  setProcess(process: ComponentProcess): void;
} {
  const { name, imds } = parts;
  let proc = parts.process;
  let state: LocalInstance["state"] = "running";
  let terminating = false;
  const instance: LocalInstance = {
    name: parts.name,
    market: parts.market,
    instanceType: parts.instanceType,
    availabilityZone: parts.availabilityZone,
    imds,
    get process() {
      return proc;
    },
    get state() {
      return state;
    },
    reclaim(withNotice) {
      if (state !== "running") return;
      if (withNotice) {
        state = "noticed";
        const lead = SPOT_NOTICE_MS * deps.timeFactor;
        imds.noticeInterruption(new Date(Date.now() + lead));
        deps.publishSpotEvent({ kind: "interruption-warning", instanceId: name });
        setTimeout(() => void proc.kill(), lead).unref();
      } else {
        state = "gone";
        void proc.kill();
      }
    },
    recommendRebalance() {
      if (state !== "running") return;
      imds.recommendRebalance();
      deps.publishSpotEvent({ kind: "rebalance-recommendation", instanceId: name });
    },
    async terminate() {
      if (state === "gone" || state === "stopped") return;
      terminating = true;
      await proc.stop();
    },
  };
  return {
    public: instance,
    get terminating() {
      return terminating;
    },
    setState(next) {
      state = next;
    },
    setProcess(next) {
      proc = next;
    },
  };
}

/** Fleet mode: local EC2, whose launches start instances of this stack. */
function startFleetCapacity(
  addInstance: AddInstance,
  logger: Logger,
  options: LocalStackOptions,
): Promise<LocalEc2> {
  return startLocalEc2(
    {
      startInstance: ({ market, instanceType, availabilityZone }) =>
        addInstance(market, { instanceType, availabilityZone }),
      logger,
      clock: systemClock,
    },
    {
      ...(options.spotOutage ? { spotOutage: options.spotOutage } : {}),
      maxInstances: Math.max(50, options.maxInstances ?? 20),
    },
  );
}

/** The simulated spot market, reclaiming the stack's running instances. */
function startSpotMarket(
  policy: SpotMarketPolicy,
  instances: readonly LocalInstance[],
  logger: Logger,
): SpotMarket {
  const spotMarket = new SpotMarket(
    {
      clock: systemClock,
      logger,
      instances: () =>
        instances.map((i) => ({
          name: i.name,
          market: i.market,
          reclaimable: i.state === "running",
        })),
      reclaim: (d: ReclaimDecision) =>
        instances.find((i) => i.name === d.name)?.reclaim(d.kind === "notice"),
    },
    policy,
  );
  spotMarket.start();
  return spotMarket;
}

function stopSchedulers(state: StackState): Promise<unknown> {
  return Promise.all([state.scheduler?.stop(), ...state.extraSchedulers.map((s) => s.stop())]);
}

/** `close`: stops every component in an order that launches nothing new, then the server. */
function stackCloser(
  state: StackState,
  spotMarket: SpotMarket | undefined,
  closeServer: () => Promise<void>,
): () => Promise<void> {
  let closed: Promise<void> | undefined;
  return () => {
    closed ??= (async () => {
      state.closing = true;
      spotMarket?.stop();
      if (state.localEc2) {
        // The fleet manager first, so it does not launch replacements for what stops next.
        await stopSchedulers(state);
        await state.localEc2.close();
      }
      await Promise.all(state.instances.map((i) => i.process.stop()));
      await Promise.all(state.instances.map((i) => i.imds.close()));
      await stopSchedulers(state);
      await closeServer();
    })();
    return closed;
  };
}
