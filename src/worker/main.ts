/**
 * The worker process, one per instance: `node dist/worker/main.js` (compiled; from the sources,
 * `node --import tsx src/worker/main.ts`).
 *
 * Settings come from SHARDFLEET_* variables (src/shared/config.ts), AWS endpoints and
 * credentials from the standard AWS variables, the instance metadata service from
 * AWS_EC2_METADATA_SERVICE_ENDPOINT (AWS_EC2_METADATA_DISABLED=true: no interruption watcher).
 * A bad setting prints one line and exits 78 (EX_CONFIG) before anything starts.
 *
 * A spot interruption notice, SIGTERM or SIGINT drain the worker: no more receives, in-flight
 * rows get SHARDFLEET_DRAIN_GRACE_S, then each shard flushes a final checkpoint and its message
 * is visible again at once; the process exits 0. A second signal aborts in-flight shards at
 * once (they still flush their checkpoint).
 */
import { createAwsClients } from "../shared/aws.ts";
import { type Config, loadConfig, requireQueue } from "../shared/config.ts";
import { ConfigError } from "../shared/errors.ts";
import { createLogger } from "../shared/logger.ts";
import { ObjectStore } from "../shared/object-store.ts";
import { ShardQueue } from "../shared/shard-queue.ts";
import { VERSION } from "../shared/version.ts";
import { readInstanceIdentity } from "./instance-identity.ts";
import { DEFAULT_IMDS_ENDPOINT } from "./interruption-watcher.ts";
import { Worker } from "./worker.ts";

/** EX_CONFIG from sysexits.h: a supervisor should not restart into the same mistake. */
const EXIT_CONFIG = 78;

function configOrExit(): { config: Config; workQueue: string } {
  try {
    const config = loadConfig(process.env);
    return { config, workQueue: requireQueue(config, "work") };
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`shardfleet worker: ${err.message}\n`);
      process.exit(EXIT_CONFIG);
    }
    throw err;
  }
}

async function main(): Promise<number> {
  const { config, workQueue } = configOrExit();
  const imdsDisabled = /^(true|1)$/i.test(process.env.AWS_EC2_METADATA_DISABLED ?? "");
  const imdsEndpoint = process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT || DEFAULT_IMDS_ENDPOINT;
  // On EC2 the instance says who it is; explicit settings win (the local stack sets them).
  const identity =
    imdsDisabled || process.env.SHARDFLEET_INSTANCE_ID
      ? undefined
      : await readInstanceIdentity(imdsEndpoint);
  const instanceId = identity?.instanceId ?? config.worker.instanceId;
  const market = process.env.SHARDFLEET_MARKET
    ? config.worker.market
    : (identity?.market ?? config.worker.market);
  const logger = createLogger({
    level: config.log.level,
    pretty: config.log.pretty,
    base: { component: "worker", instanceId, market },
  });
  // The first line says which release runs, so a log alone tells which code wrote it.
  logger.info({ version: VERSION, node: process.version }, "worker starting");
  const clients = createAwsClients({ timeouts: config.aws });
  const drainGraceMs = config.worker.drainGraceSeconds * 1000;
  const worker = new Worker(
    {
      store: new ObjectStore({ s3: clients.s3 }, { bucket: config.bucket }),
      queue: new ShardQueue({ sqs: clients.sqs }),
      logger,
    },
    {
      instanceId,
      market,
      pluginDir: config.worker.pluginDir,
      egress: config.egress,
      queues: { work: workQueue, straggler: config.queues.straggler, dlq: config.queues.dlq },
      shardsInFlight: config.worker.shardsInFlight,
      visibilityTimeoutSeconds: config.worker.visibilityTimeoutSeconds,
      pollWaitSeconds: config.worker.pollWaitSeconds,
      drainGraceMs,
      imds: imdsDisabled
        ? false
        : {
            endpoint: imdsEndpoint,
            pollIntervalMs: config.worker.interruptionPollSeconds * 1000,
            drainOnRebalance: config.worker.drainOnRebalance,
          },
    },
  );
  if (imdsDisabled) logger.info("AWS_EC2_METADATA_DISABLED: not watching for spot notices");

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    logger.info({ signal }, signals === 1 ? "stopping" : "stopping now");
    void worker.stop({ graceMs: signals === 1 ? drainGraceMs : 0, reason: signal });
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);

  let code = 0;
  try {
    await worker.run();
  } catch (err) {
    logger.fatal({ err }, "worker failed");
    code = 1;
  }
  clients.destroy();
  return code;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(
      `shardfleet worker: ${err instanceof Error ? err.message : String(err)}\n`,
    );
    process.exitCode = 1;
  },
);
