/**
 * The local stack: the whole system on one machine. A real SQS/S3-compatible server on
 * 127.0.0.1, the bucket and queues, and optionally the scheduler and N "instances" (worker
 * child processes) running the same entry points as in AWS; only endpoints differ.
 */
import { createServer } from "node:net";
import { request } from "undici";
import { createAwsClients } from "../shared/aws.ts";
import { startLocalAwsServer } from "./aws-server.ts";
import { type ComponentProcess, spawnComponent } from "./processes.ts";
import { type ProvisionedResources, provisionResources } from "./provision.ts";

/** Dummy credentials: the local server does not check signatures, but the SDK insists on some. */
export const LOCAL_CREDENTIALS = { accessKeyId: "test", secretAccessKey: "test" } as const;
export const LOCAL_REGION = "us-east-1";

export interface LocalStackOptions {
  /** Port of the SQS/S3 server. @default 0 (a free port) */
  awsPort?: number;
  /** Start the scheduler API (a child process). @default true when workers > 0 */
  scheduler?: boolean;
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
  /** Bucket name. @default "shardfleet-local" */
  bucket?: string;
}

export interface LocalStack {
  /** The SQS/S3 endpoint, e.g. http://127.0.0.1:4566 */
  readonly endpoint: string;
  readonly region: string;
  readonly resources: ProvisionedResources;
  /** AWS client variables pointing at the local server (for `export` in a shell). */
  readonly clientEnv: Record<string, string>;
  /** Client variables plus every SHARDFLEET_* setting a component needs. */
  readonly componentEnv: Record<string, string>;
  /** The scheduler API URL, when the scheduler runs. */
  readonly apiUrl: string | undefined;
  readonly scheduler: ComponentProcess | undefined;
  readonly instances: ComponentProcess[];
  /** Starts one more worker instance. */
  addInstance(market?: "spot" | "on-demand"): ComponentProcess;
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

async function waitForHealth(url: string, component: ComponentProcess, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  let exited: number | string | undefined;
  void component.exited.then((code) => {
    exited = code;
  });
  while (Date.now() < deadline) {
    if (exited !== undefined) {
      throw new Error(
        `the scheduler exited (${exited}) before it was ready${component.logFile ? `; see ${component.logFile}` : ""}`,
      );
    }
    try {
      const res = await request(`${url}/healthz`);
      await res.body.dump();
      if (res.statusCode === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the scheduler did not answer ${url}/healthz within ${timeoutMs} ms`);
}

export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  const server = await startLocalAwsServer({ port: options.awsPort ?? 0 });
  const instances: ComponentProcess[] = [];
  let scheduler: ComponentProcess | undefined;
  try {
    const clients = createAwsClients({
      endpoint: server.endpoint,
      region: LOCAL_REGION,
      credentials: LOCAL_CREDENTIALS,
    });
    const resources = await provisionResources(
      clients,
      { bucket: options.bucket },
      { visibilityTimeoutSeconds: options.visibilityTimeoutSeconds },
    );
    clients.destroy();

    const clientEnv = {
      AWS_ENDPOINT_URL: server.endpoint,
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
      ...options.settings,
    };

    let apiUrl: string | undefined;
    const workers = options.workers ?? 0;
    if (options.scheduler ?? workers > 0) {
      const port = options.apiPort || (await freePort());
      apiUrl = `http://127.0.0.1:${port}`;
      scheduler = spawnComponent("scheduler", {
        name: "scheduler",
        env: {
          ...componentEnv,
          SHARDFLEET_API_HOST: "127.0.0.1",
          SHARDFLEET_API_PORT: String(port),
        },
        logDir: options.logDir,
      });
      await waitForHealth(apiUrl, scheduler, 30_000);
    }

    let nextInstance = 1;
    const addInstance = (market: "spot" | "on-demand" = "spot") => {
      const name = `local-${String(nextInstance++).padStart(3, "0")}`;
      const instance = spawnComponent("worker", {
        name,
        env: { ...componentEnv, SHARDFLEET_INSTANCE_ID: name, SHARDFLEET_MARKET: market },
        logDir: options.logDir,
      });
      instances.push(instance);
      return instance;
    };
    for (let i = 0; i < workers; i++) addInstance();

    let closed: Promise<void> | undefined;
    return {
      endpoint: server.endpoint,
      region: LOCAL_REGION,
      resources,
      clientEnv,
      componentEnv,
      apiUrl,
      scheduler,
      instances,
      addInstance,
      close() {
        closed ??= (async () => {
          await Promise.all(instances.map((p) => p.stop()));
          await scheduler?.stop();
          await server.close();
        })();
        return closed;
      },
    };
  } catch (err) {
    await Promise.all(instances.map((p) => p.kill()));
    await scheduler?.kill();
    await server.close();
    throw err;
  }
}
