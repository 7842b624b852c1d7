/**
 * The one end-to-end harness: the local stack (S3/SQS server, scheduler, worker instances or
 * local EC2 — the same stack `shardfleet local` runs) started in a temporary folder with the
 * settings every end-to-end test wants, and an API client; plus what those tests read back from
 * it (the bucket, attempt records, the output workbook, the fleet's end). One per stack
 * (beforeAll/afterAll, or inside the test that starts it, closed in afterAll/afterEach).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import ExcelJS from "exceljs";
import { ApiClient, type OperationView } from "../../src/cli/api-client.ts";
import {
  LOCAL_CREDENTIALS,
  type LocalStack,
  type LocalStackOptions,
  startLocalStack,
} from "../../src/local/stack.ts";
import { type AwsClients, createAwsClients } from "../../src/shared/aws.ts";
import { FLEET_TAGS } from "../../src/shared/capacity.ts";
import { keys } from "../../src/shared/keys.ts";
import { ObjectStore } from "../../src/shared/object-store.ts";
import { type Attempt, attemptSchema } from "../../src/shared/schemas/shard.ts";
import { writePlugin } from "./plugins.ts";
import { waitFor } from "./wait.ts";

export interface TestStackOptions extends LocalStackOptions {
  /**
   * Transform plugins written into `<dir>/plugins` before the stack starts (file name → module
   * source); SHARDFLEET_PLUGIN_DIR names that folder. @default none
   */
  plugins?: Readonly<Record<string, string>>;
}

export interface TestStack {
  /** The test's temporary folder (inputs, component logs, plugins); `close` removes it. */
  readonly dir: string;
  readonly stack: LocalStack;
  /** A client of the stack's API (no token). */
  readonly client: ApiClient;
  /** Stops the stack, then removes the folder. */
  close(): Promise<void>;
}

/**
 * Starts the local stack in a fresh folder `shardfleet-{name}-…`, with component logs in
 * `<dir>/logs` (or `logDir`), workers polling with a 1 s wait and, in fleet mode, a fleet pass
 * every 0.5 s (`settings` win over these). `options` may be a function of the folder, for
 * settings that name files in it.
 */
export async function startTestStack(
  name: string,
  options: TestStackOptions | ((dir: string) => TestStackOptions | Promise<TestStackOptions>) = {},
): Promise<TestStack> {
  const dir = await mkdtemp(path.join(tmpdir(), `shardfleet-${name}-`));
  try {
    const { plugins, ...stackOptions } =
      typeof options === "function" ? await options(dir) : options;
    let pluginDir: string | undefined;
    for (const [file, source] of Object.entries(plugins ?? {})) {
      pluginDir = await writePlugin(dir, file, source);
    }
    const stack = await startLocalStack({
      ...stackOptions,
      logDir: stackOptions.logDir ?? path.join(dir, "logs"),
      settings: {
        SHARDFLEET_POLL_WAIT_S: "1",
        ...(stackOptions.capacity === "fleet" ? { SHARDFLEET_FLEET_INTERVAL_S: "0.5" } : {}),
        ...(pluginDir ? { SHARDFLEET_PLUGIN_DIR: pluginDir } : {}),
        ...stackOptions.settings,
      },
    });
    return {
      dir,
      stack,
      client: new ApiClient(stack.apiUrl!),
      async close() {
        try {
          await stack.close();
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      },
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Clients for the stack's S3/SQS server, direct (past any interposed proxy); the caller destroys them. */
export function stackClients(stack: LocalStack): AwsClients {
  return createAwsClients({
    endpoint: stack.endpoint,
    region: stack.region,
    credentials: LOCAL_CREDENTIALS,
  });
}

/** Runs `use` with the stack's bucket (and the clients behind it), then destroys the clients. */
export async function withStackStore<T>(
  stack: LocalStack,
  use: (store: ObjectStore, clients: AwsClients) => Promise<T>,
): Promise<T> {
  const clients = stackClients(stack);
  try {
    return await use(new ObjectStore(clients, { bucket: stack.resources.bucket }), clients);
  } finally {
    clients.destroy();
  }
}

/** Every attempt record of one shard, as workers wrote them (unreadable ones skipped). */
export async function shardAttempts(
  store: ObjectStore,
  operationId: string,
  shardId: string,
): Promise<Attempt[]> {
  const out: Attempt[] = [];
  for (const key of await store.list(keys.attemptsPrefix(operationId, shardId))) {
    const attempt = await store.getJson(key, attemptSchema);
    if (attempt) out.push(attempt);
  }
  return out;
}

/** Every row of the output workbook's first sheet (header first), downloaded through the API. */
export async function downloadRows(client: ApiClient, id: string): Promise<unknown[][]> {
  const body = new PassThrough();
  const chunks: Buffer[] = [];
  body.on("data", (c: Buffer) => chunks.push(c));
  await client.download(id, () => body);
  const workbook = new ExcelJS.Workbook();
  await workbook.xlsx.load(Buffer.concat(chunks) as unknown as ArrayBuffer);
  const rows: unknown[][] = [];
  workbook.worksheets[0]!.eachRow((row) => {
    rows.push((row.values as unknown[]).slice(1));
  });
  return rows;
}

/** Waits for every instance of the operation terminated in local EC2, then for the view that shows it. */
export async function fleetEnded(
  stack: LocalStack,
  client: ApiClient,
  id: string,
  timeoutMs: number,
): Promise<OperationView> {
  const tags = { [FLEET_TAGS.operation]: id };
  await waitFor(
    "every instance terminated",
    async () => {
      const live = stack.localEc2!.describe(tags).filter((i) => i.state !== "terminated");
      return live.length === 0 ? true : undefined;
    },
    timeoutMs,
  );
  return waitFor(
    "the operation's view to show it",
    async () => {
      const v = await client.get(id);
      return v.instances?.length && v.instances.every((i) => i.state === "terminated")
        ? v
        : undefined;
    },
    timeoutMs,
  );
}
