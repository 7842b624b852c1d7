/**
 * The scheduler process: HTTP API + the operation loop, wired from the environment.
 *
 *   node --import tsx src/scheduler/main.ts
 *
 * Exit codes: 0 after SIGTERM/SIGINT, 78 (EX_CONFIG) for a bad setting, 1 for anything else
 * that stops it from starting.
 */
import { pathToFileURL } from "node:url";
import { type AwsClients, createAwsClients } from "../shared/aws.ts";
import { systemClock } from "../shared/clock.ts";
import { type Config, loadConfig, requireQueue } from "../shared/config.ts";
import { ConfigError, describeError } from "../shared/errors.ts";
import { createLogger, type Logger } from "../shared/logger.ts";
import { ObjectStore } from "../shared/object-store.ts";
import { ShardQueue } from "../shared/shard-queue.ts";
import { buildApp } from "./api/app.ts";
import { OperationService } from "./operations.ts";
import { Scheduler } from "./scheduler.ts";

export interface RunningScheduler {
  /** Base URL of the API, e.g. `http://127.0.0.1:8080`. */
  readonly url: string;
  /** Stops taking requests, then stops the loop (running splits/merges resume on next start). */
  close(): Promise<void>;
}

/**
 * Starts the API and the loop in this process. The caller owns `clients` (and destroys them
 * after `close`). Throws ConfigError when the work queue is not configured.
 */
export async function startScheduler(deps: {
  config: Config;
  clients: Pick<AwsClients, "s3" | "sqs">;
  logger: Logger;
}): Promise<RunningScheduler> {
  const { config, clients, logger } = deps;
  const workQueueUrl = requireQueue(config, "work");
  const store = new ObjectStore({ s3: clients.s3 }, { bucket: config.bucket });
  const queue = new ShardQueue({ sqs: clients.sqs });
  const operations = new OperationService({ store, logger, clock: systemClock });
  const app = buildApp({ operations, logger, maxUploadBytes: config.api.maxUploadBytes });
  const scheduler = new Scheduler(
    { store, queue, logger, clock: systemClock },
    { workQueueUrl, dlqUrl: config.queues.dlq },
  );
  const url = await app.listen({ host: config.api.host, port: config.api.port });
  scheduler.start();
  let closed: Promise<void> | undefined;
  return {
    url,
    close() {
      closed ??= (async () => {
        await app.close();
        await scheduler.stop();
      })();
      return closed;
    },
  };
}

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(process.env);
    requireQueue(config, "work");
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`shardfleet scheduler: ${err.message}\n`);
      process.exit(78);
    }
    throw err;
  }
  const logger = createLogger({
    level: config.log.level,
    pretty: config.log.pretty,
    base: { component: "scheduler" },
  });
  const clients = createAwsClients();
  let running: RunningScheduler;
  try {
    running = await startScheduler({ config, clients, logger });
  } catch (err) {
    logger.fatal({ err }, "scheduler could not start");
    process.stderr.write(`shardfleet scheduler: cannot start: ${describeError(err)}\n`);
    clients.destroy();
    process.exit(err instanceof ConfigError ? 78 : 1);
  }
  logger.info({ url: running.url }, "scheduler listening");

  let stopping = false;
  const shutdown = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    running
      .close()
      .then(() => {
        clients.destroy();
        process.exit(0);
      })
      .catch((err: unknown) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      });
  };
  process.once("SIGTERM", shutdown);
  process.once("SIGINT", shutdown);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main().catch((err: unknown) => {
    process.stderr.write(`shardfleet scheduler: ${describeError(err)}\n`);
    process.exit(1);
  });
}
