/** `shardfleet local`: the whole system on this machine until Ctrl+C. */
import path from "node:path";
import { startLocalStack } from "../../local/stack.ts";
import { loadConfig } from "../../shared/config.ts";
import { ShardfleetError } from "../../shared/errors.ts";
import { VERSION } from "../../shared/version.ts";
import { CliError, EXIT } from "../cli-error.ts";

/**
 * Settings the stack decides itself (its bucket and queues, the API's address, each instance's
 * identity, where capacity comes from): a shell's value would point a component elsewhere.
 */
export const STACK_OWNED_SETTINGS: ReadonlySet<string> = new Set([
  "SHARDFLEET_BUCKET",
  "SHARDFLEET_WORK_QUEUE_URL",
  "SHARDFLEET_STRAGGLER_QUEUE_URL",
  "SHARDFLEET_DLQ_URL",
  "SHARDFLEET_SPOT_EVENTS_QUEUE_URL",
  "SHARDFLEET_API_HOST",
  "SHARDFLEET_API_PORT",
  "SHARDFLEET_INSTANCE_ID",
  "SHARDFLEET_MARKET",
  "SHARDFLEET_CAPACITY",
  "SHARDFLEET_LOCAL_EC2_URL",
]);

/** The CLI's own variables (where to send requests), not component settings. */
const CLIENT_SETTINGS: ReadonlySet<string> = new Set([
  "SHARDFLEET_API_URL",
  "SHARDFLEET_API_TOKEN",
]);

/**
 * The shell's SHARDFLEET_* settings for the stack's components, checked as the components will
 * check them (a bad one is a CliError with exit 78 naming it, before anything starts).
 */
export function shellSettings(env: NodeJS.ProcessEnv): {
  passed: Record<string, string>;
  ignored: string[];
} {
  const passed: Record<string, string> = {};
  const ignored: string[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith("SHARDFLEET_") || value === undefined || CLIENT_SETTINGS.has(name))
      continue;
    if (STACK_OWNED_SETTINGS.has(name)) ignored.push(name);
    else passed[name] = value;
  }
  try {
    loadConfig(passed);
  } catch (err) {
    if (err instanceof ShardfleetError) throw new CliError(err.message, EXIT.config);
    throw err;
  }
  return { passed, ignored: ignored.sort() };
}

export async function runLocal(opts: {
  awsPort: number;
  apiPort: number;
  workers: number;
  logDir: string;
  /** Where objects are kept across restarts (ignored with `ephemeral`). */
  dataDir: string;
  /** Keep nothing on disk. */
  ephemeral?: boolean;
  /** Fleet mode: the fleet manager launches instances through local EC2; `workers` is ignored. */
  fleet?: boolean;
  maxInstances?: number;
  spotOutageS?: { fromMs: number; toMs: number };
}): Promise<void> {
  const started = performance.now();
  const shell = shellSettings(process.env);
  const stack = await startLocalStack({
    awsPort: opts.awsPort,
    apiPort: opts.apiPort,
    scheduler: true,
    logDir: path.resolve(opts.logDir),
    ...(opts.ephemeral ? {} : { dataDir: path.resolve(opts.dataDir) }),
    settings: shell.passed,
    ...(opts.fleet
      ? {
          capacity: "fleet" as const,
          ...(opts.maxInstances !== undefined ? { maxInstances: opts.maxInstances } : {}),
          ...(opts.spotOutageS ? { spotOutage: opts.spotOutageS } : {}),
        }
      : { workers: opts.workers }),
  }).catch((err: Error & { code?: string }) => {
    throw new CliError(`cannot start the local stack: ${err.message}`, EXIT.unavailable);
  });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const out = [
    `shardfleet ${VERSION} local stack is up (${seconds} s)`,
    `  SQS/S3 endpoint  ${stack.endpoint}`,
    `  bucket           ${stack.resources.bucket}`,
    stack.data
      ? `  data             ${opts.dataDir} (${stack.data.objects} objects loaded; kept across restarts; queues are not: the scheduler's sweep sends undone shards again)`
      : "  data             ephemeral (nothing is kept when the stack stops)",
    `  work queue       ${stack.resources.queues.work}`,
    `  straggler queue  ${stack.resources.queues.straggler}`,
    `  dead letters     ${stack.resources.queues.dlq}`,
    `  spot events      ${stack.resources.queues.spotEvents} (EventBridge-shaped notices)`,
    `  API              ${stack.apiUrl}`,
    `  settings         ${Object.keys(shell.passed).sort().join(", ") || "none"} from this shell${shell.ignored.length > 0 ? `; ignored (the stack sets them): ${shell.ignored.join(", ")}` : ""}`,
    stack.localEc2
      ? `  instances        launched by the fleet manager through local EC2 at ${stack.localEc2.url}, at most ${opts.maxInstances ?? 20}${opts.spotOutageS ? `; no spot capacity ${opts.spotOutageS.fromMs / 1000}–${opts.spotOutageS.toMs / 1000} s after start` : ""} (logs in ${opts.logDir}/)`
      : `  instances        ${stack.instances.length} (logs in ${opts.logDir}/)`,
    "",
    "Point an AWS SDK client or the CLI at it:",
    ...Object.entries(stack.clientEnv).map(([k, v]) => `  export ${k}=${v}`),
    `  export SHARDFLEET_API_URL=${stack.apiUrl}`,
    "",
    "Press Ctrl+C to stop.",
  ];
  process.stdout.write(`${out.join("\n")}\n`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  process.stdout.write("stopping…\n");
  await stack.close();
  process.stdout.write("stopped\n");
}
