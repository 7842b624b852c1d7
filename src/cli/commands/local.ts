/** `shardfleet local`: the whole system on this machine until Ctrl+C. */
import path from "node:path";
import { startLocalStack } from "../../local/stack.ts";
import { VERSION } from "../../shared/version.ts";
import { CliError, EXIT } from "../cli-error.ts";

export async function runLocal(opts: {
  awsPort: number;
  apiPort: number;
  workers: number;
  logDir: string;
  /** Fleet mode: the fleet manager launches instances through local EC2; `workers` is ignored. */
  fleet?: boolean;
  maxInstances?: number;
  spotOutageS?: { fromMs: number; toMs: number };
}): Promise<void> {
  const started = performance.now();
  const stack = await startLocalStack({
    awsPort: opts.awsPort,
    apiPort: opts.apiPort,
    scheduler: true,
    logDir: path.resolve(opts.logDir),
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
    `  work queue       ${stack.resources.queues.work}`,
    `  straggler queue  ${stack.resources.queues.straggler}`,
    `  dead letters     ${stack.resources.queues.dlq}`,
    `  spot events      ${stack.resources.queues.spotEvents} (EventBridge-shaped notices)`,
    `  API              ${stack.apiUrl}`,
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
