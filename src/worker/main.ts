/**
 * The worker process, one per instance: `node --import tsx src/worker/main.ts`.
 *
 * Settings come from SHARDFLEET_* variables (src/shared/config.ts), AWS endpoints and
 * credentials from the standard AWS variables. A bad setting prints one line and exits 78
 * (EX_CONFIG) before anything starts. SIGTERM or SIGINT drain the consumer (in-flight shards get
 * the grace period) and exit 0; a second signal aborts in-flight shards at once.
 */
import { createAwsClients } from "../shared/aws.ts";
import { type Config, loadConfig, requireQueue } from "../shared/config.ts";
import { ConfigError } from "../shared/errors.ts";
import { createLogger } from "../shared/logger.ts";
import { ObjectStore } from "../shared/object-store.ts";
import { ShardQueue } from "../shared/shard-queue.ts";
import { Consumer } from "./consumer.ts";
import { ShardProcessor } from "./shard-processor.ts";

/** EX_CONFIG from sysexits.h: a supervisor should not restart into the same mistake. */
const EXIT_CONFIG = 78;
/** In-flight shards' time to finish after SIGTERM (EC2 spot gives two minutes in all). */
const STOP_GRACE_MS = 30_000;

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
  const { instanceId, market } = config.worker;
  const logger = createLogger({
    level: config.log.level,
    pretty: config.log.pretty,
    base: { component: "worker", instanceId, market },
  });
  const clients = createAwsClients();
  const store = new ObjectStore({ s3: clients.s3 }, { bucket: config.bucket });
  const processor = new ShardProcessor(
    { store, logger },
    { instanceId, market, pluginDir: config.worker.pluginDir },
  );
  const consumer = new Consumer(
    { queue: new ShardQueue({ sqs: clients.sqs }), handler: processor, logger },
    {
      queues: {
        work: workQueue,
        straggler: config.queues.straggler,
        dlq: config.queues.dlq,
      },
      market,
      shardsInFlight: config.worker.shardsInFlight,
      visibilityTimeoutSeconds: config.worker.visibilityTimeoutSeconds,
      pollWaitSeconds: config.worker.pollWaitSeconds,
      stopGraceMs: STOP_GRACE_MS,
    },
  );

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    logger.info({ signal }, signals === 1 ? "stopping" : "stopping now");
    void consumer.stop({ graceMs: signals === 1 ? STOP_GRACE_MS : 0 });
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);

  let code = 0;
  try {
    await consumer.run();
  } catch (err) {
    logger.fatal({ err }, "worker failed");
    code = 1;
  }
  await processor.close();
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
