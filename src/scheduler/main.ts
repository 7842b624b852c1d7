/**
 * The scheduler process: HTTP API + the operation loop (+ the fleet manager when
 * SHARDFLEET_CAPACITY is `local` or `ec2`), wired from the environment. The API serves at once;
 * the loops run only while this process holds the bucket's scheduler lease (./lease/): a second
 * scheduler on the same bucket stands by and takes over when the first one's lease lapses.
 *
 *   node dist/scheduler/main.js               (compiled)
 *   node --import tsx src/scheduler/main.ts   (from the sources)
 *
 * Exit codes: 0 after SIGTERM/SIGINT, 78 (EX_CONFIG) for a bad setting, 1 for anything else
 * that stops it from starting.
 */
import { pathToFileURL } from "node:url";
import { type AwsClients, createAwsClients } from "../shared/aws.ts";
import type { CapacityProvider, Pool } from "../shared/capacity.ts";
import type { Clock } from "../shared/clock.ts";
import { systemClock } from "../shared/clock.ts";
import { type Config, loadConfig, requireQueue } from "../shared/config.ts";
import { ConfigError, describeError } from "../shared/errors.ts";
import { FinishedOperations } from "../shared/finished-operations.ts";
import { createLogger, type Logger } from "../shared/logger.ts";
import { ObjectStore } from "../shared/object-store.ts";
import type { TenantCaps } from "../shared/schemas/tokens.ts";
import { ShardQueue } from "../shared/shard-queue.ts";
import { VERSION } from "../shared/version.ts";
import { buildApp } from "./api/app.ts";
import { checkExposure } from "./api/exposure.ts";
import { TenantDirectory } from "./api/tenants.ts";
import { loadApiTokens } from "./api/tokens.ts";
import { costServiceFromConfig } from "./cost/from-config.ts";
import { Ec2Capacity } from "./fleet/ec2-capacity.ts";
import { FleetRecords } from "./fleet/fleet-manager/fleet-records.ts";
import { FleetManager } from "./fleet/fleet-manager.ts";
import { LOCAL_POOLS, LOCAL_PRICES, LocalCapacity } from "./fleet/local-capacity.ts";
import { hourlyPrice } from "./fleet/policy/sizing.ts";
import type { FleetPolicyOptions, PriceTable } from "./fleet/policy.ts";
import { EC2_PRICES } from "./fleet/prices.ts";
import { SpotEventConsumer } from "./fleet/spot-events.ts";
import { Leadership, type Tenure } from "./lease/leadership.ts";
import { newHolderId, SchedulerLeaseRecord } from "./lease/scheduler-lease.ts";
import { SchedulerMetrics } from "./metrics/metrics.ts";
import { SpendLog } from "./metrics/spend-log.ts";
import { notifierFromConfig, notifyChannels } from "./notify/from-config.ts";
import { NotificationRecords } from "./notify/records.ts";
import { OperationService, STATUS_SHARED_MS } from "./operations.ts";
import { Scheduler } from "./scheduler.ts";
import { Sweep } from "./sweep/sweep.ts";

export interface RunningScheduler {
  /** Base URL of the API, e.g. `http://127.0.0.1:8080`. */
  readonly url: string;
  /** This process's scheduler lease holder id (`host/pid/random`). */
  readonly holder: string;
  /**
   * Stops taking requests, then stops the loops (running splits/merges resume on next start)
   * and releases the lease, so a standby takes over at once.
   */
  close(): Promise<void>;
}

/** The capacity adapter, its pools and prices, from the fleet settings; undefined for `none`. */
export function capacityFromConfig(
  config: Config,
  deps: { ec2?: AwsClients["ec2"]; logger: Logger; clock: Clock },
):
  | {
      capacity: CapacityProvider;
      pools: Pool[];
      prices: PriceTable;
      /**
       * An instance whose worker has not reported up this long after launch is terminated
       * (the policy's bootDeadlineMs), unless SHARDFLEET_BOOT_DEADLINE_S says otherwise.
       */
      bootDeadlineMs: number;
      close(): Promise<void>;
    }
  | undefined {
  const fleet = config.fleet;
  switch (fleet.capacity) {
    case "none":
      return undefined;
    case "local": {
      if (!fleet.localEc2Url) {
        throw new ConfigError(
          "SHARDFLEET_CAPACITY=local needs SHARDFLEET_LOCAL_EC2_URL (the local stack sets it)",
          { details: { setting: "SHARDFLEET_LOCAL_EC2_URL" } },
        );
      }
      const capacity = new LocalCapacity({}, { url: fleet.localEc2Url });
      return {
        capacity,
        // A worker child process is up in seconds; allow for a very busy machine.
        bootDeadlineMs: 120_000,
        pools: [...LOCAL_POOLS],
        prices: LOCAL_PRICES,
        close: () => capacity.close(),
      };
    }
    case "ec2": {
      const template = fleet.ec2.launchTemplate;
      if (!template) {
        throw new ConfigError(
          "SHARDFLEET_CAPACITY=ec2 needs SHARDFLEET_EC2_LAUNCH_TEMPLATE (the worker launch template's id lt-… or name)",
          { details: { setting: "SHARDFLEET_EC2_LAUNCH_TEMPLATE" } },
        );
      }
      if (!deps.ec2) throw new ConfigError("SHARDFLEET_CAPACITY=ec2 needs an EC2 client");
      const capacity = new Ec2Capacity(
        { ec2: deps.ec2, logger: deps.logger, clock: deps.clock },
        {
          launchTemplate: template.startsWith("lt-") ? { id: template } : { name: template },
          instanceTypes: [...fleet.ec2.instanceTypes],
          subnets: fleet.ec2.subnets.map((s) => ({ ...s })),
        },
      );
      return {
        capacity,
        // Boot, then the worker service starts: a minute or two, with room to spare.
        bootDeadlineMs: 600_000,
        pools: [...capacity.pools],
        prices: EC2_PRICES,
        close: async () => {},
      };
    }
  }
}

/** The tenants' instance and spend caps for the fleet policy (from the tokens and defaults). */
function tenantFleetCaps(
  tenants: TenantDirectory,
): Pick<FleetPolicyOptions, "tenantCaps" | "defaultTenantCaps"> {
  const fleetCaps = (caps: TenantCaps) => ({
    ...(caps.maxInstances === undefined ? {} : { maxInstances: caps.maxInstances }),
    ...(caps.maxHourlyUsd === undefined ? {} : { maxHourlyUsd: caps.maxHourlyUsd }),
  });
  return {
    tenantCaps: Object.fromEntries(tenants.tenants.map((t) => [t, fleetCaps(tenants.capsOf(t))])),
    defaultTenantCaps: fleetCaps(tenants.defaultCaps),
  };
}

/**
 * Starts the API and the loop in this process (and the fleet manager when capacity is not
 * `none`, with the EventBridge spot events consumer when SHARDFLEET_SPOT_EVENTS_QUEUE_URL is
 * set). The caller owns `clients` (and destroys them after `close`). Throws ConfigError when
 * the work queue or a fleet setting is missing.
 */
export async function startScheduler(deps: {
  config: Config;
  clients: Pick<AwsClients, "s3" | "sqs"> & Partial<Pick<AwsClients, "ec2">>;
  logger: Logger;
}): Promise<RunningScheduler> {
  const { config, clients, logger } = deps;
  const workQueueUrl = requireQueue(config, "work");
  const tenants = new TenantDirectory(
    await loadApiTokens(config.api.auth, { logger }),
    config.api.tenantDefaults,
  );
  // Before anything else starts: an open API beyond loopback is refused unless asked for.
  checkExposure(
    {
      host: config.api.host,
      anonymous: tenants.anonymous,
      allowAnonymous: config.api.allowAnonymous,
    },
    logger,
  );
  if (tenants.legacyTokens > 0) {
    logger.warn(
      { tokens: tenants.legacyTokens, tenant: "default" },
      "old token format: plain tokens belong to tenant default; store tenant=NAME sha256=HASH lines instead (shardfleet token create)",
    );
  }
  const store = new ObjectStore({ s3: clients.s3 }, { bucket: config.bucket });
  const queue = new ShardQueue({ sqs: clients.sqs });
  const operations = new OperationService(
    {
      store,
      logger,
      clock: systemClock,
      // A submission starts its split now rather than at the active scheduler's next pass.
      onQueued: () => active?.wake(),
      // A retried operation is read again by this process's loops at once (not at their recheck).
      onRetried: (id) => {
        active?.revive(id);
        activeFleet?.revive(id);
      },
    },
    {
      specChecks: {
        egress: config.egress,
        pluginDir: config.worker.pluginDir,
        notify: notifyChannels(config),
      },
      workbookLimits: config.workbook,
      statusTtlMs: STATUS_SHARED_MS,
    },
  );
  const cost = await costServiceFromConfig(config, {
    store,
    logger,
    clock: systemClock,
    ...(clients.ec2 ? { ec2: clients.ec2 } : {}),
  });
  // Checked here, so a bad fleet setting stops the process at start (exit 78), not a tenure.
  const provided = capacityFromConfig(config, {
    ec2: clients.ec2,
    logger,
    clock: systemClock,
  });
  const spotEventsUrl = config.queues.spotEvents;
  if (!provided && spotEventsUrl) {
    logger.info(
      "SHARDFLEET_SPOT_EVENTS_QUEUE_URL is set but no fleet manager runs (SHARDFLEET_CAPACITY=none): spot events are not consumed",
    );
  }
  const metrics = new SchedulerMetrics(
    {
      store,
      logger,
      clock: systemClock,
      sqs: clients.sqs,
      ...(provided
        ? { hourlyPrice: (market, type) => hourlyPrice(provided.prices, market, type) }
        : {}),
    },
    {
      queues: Object.fromEntries(
        Object.entries(config.queues).filter((e): e is [string, string] => e[1] !== undefined),
      ),
    },
  );
  const app = buildApp({
    operations,
    logger,
    maxUploadBytes: config.api.maxUploadBytes,
    cost,
    tenants,
    limits: config.api.limits,
    notifications: new NotificationRecords({ store, clock: systemClock }),
    metrics,
    console: {
      pluginDir: config.worker.pluginDir,
      notify: notifyChannels(config),
      workbookLimits: config.workbook,
    },
  });
  // Only the lease holder acts; a standby serves the API (reads, and submissions, which create
  // new operations whose every later change is the active scheduler's) and waits.
  const holder = newHolderId();
  const leadership = new Leadership(
    { record: new SchedulerLeaseRecord({ store }), clock: systemClock, logger },
    { holder, durationMs: Math.round(config.lease.seconds * 1000) },
  );
  let active: Scheduler | undefined;
  let activeFleet: FleetManager | undefined;
  /** What the active scheduler runs, for one tenure; stopped the moment the tenure ends. */
  const startLoops = (tenure: Tenure) => {
    const log = logger.child({ tenure: tenure.holder });
    // One set for both loops: each finished manifest is read again once per recheck, not twice.
    const finished = new FinishedOperations({ clock: systemClock });
    const fleet =
      provided &&
      new FleetManager(
        {
          finished,
          capacity: provided.capacity,
          queue,
          store,
          logger: log,
          clock: systemClock,
          fence: tenure,
        },
        {
          // One fleet per bucket: the orphan sweep never touches another deployment's instances.
          fleet: config.bucket,
          policy: {
            pools: provided.pools,
            shardsPerInstance: config.worker.shardsInFlight,
            maxInstances: config.fleet.maxInstances,
            ...(config.fleet.maxHourlyUsd !== undefined
              ? { maxHourlyUsd: config.fleet.maxHourlyUsd }
              : {}),
            idleTimeoutMs: Math.round(config.fleet.idleTimeoutSeconds * 1000),
            bootDeadlineMs:
              config.fleet.bootDeadlineSeconds === undefined
                ? provided.bootDeadlineMs
                : Math.round(config.fleet.bootDeadlineSeconds * 1000),
            capacityDeadlineMs: Math.round(config.fleet.capacityDeadlineSeconds * 1000),
            stragglerMinMs: Math.round(config.fleet.stragglerMinSeconds * 1000),
            ...tenantFleetCaps(tenants),
          },
          prices: provided.prices,
          ...(config.queues.straggler ? { stragglerQueueUrl: config.queues.straggler } : {}),
          intervalMs: Math.round(config.fleet.intervalSeconds * 1000),
          launchConcurrency: config.fleet.launchConcurrency,
        },
      );
    const spotEvents =
      fleet && spotEventsUrl
        ? new SpotEventConsumer(
            { queue, target: fleet, logger: log, clock: systemClock },
            { queueUrl: spotEventsUrl },
          )
        : undefined;
    const scheduler = new Scheduler(
      { store, queue, logger: log, clock: systemClock, cost, fence: tenure, finished },
      {
        workQueueUrl,
        dlqUrl: config.queues.dlq,
        workbookLimits: config.workbook,
        backlog: config.dispatch,
      },
    );
    // The self-healing sweep: its fleet events go through the fleet manager's records (their one
    // writer) or, with no fleet manager, through records of its own (then the only writer).
    const sweep = new Sweep(
      {
        store,
        queue,
        dispatch: scheduler,
        logger: log,
        clock: systemClock,
        fence: tenure,
        events:
          fleet?.fleetRecords ??
          new FleetRecords({
            store,
            clock: systemClock,
            logger: log,
            instance: () => undefined,
            written: () => {},
            isWatched: () => false,
          }),
      },
      {
        workQueueUrl,
        ...(config.queues.straggler ? { stragglerQueueUrl: config.queues.straggler } : {}),
        intervalMs: Math.round(config.sweep.intervalSeconds * 1000),
        // A message is in flight for at most the visibility timeout without a heartbeat; the
        // margin covers SQS's approximate counts and a pass or two of the sweep.
        silenceMs: Math.round(
          (config.worker.visibilityTimeoutSeconds + 2 * config.sweep.intervalSeconds) * 1000,
        ),
      },
    );
    // Notifications and the spend line come from the active scheduler only (the per-event
    // records would also keep a standby from sending twice).
    const notifier = notifierFromConfig(config, { store, logger: log, clock: systemClock });
    // With a fleet manager: a spend line a minute for the AWS stack's spend alarm.
    const spendLog = provided && new SpendLog({ spend: metrics, logger: log, clock: systemClock });
    scheduler.start();
    sweep.start();
    notifier.start();
    spendLog?.start();
    fleet?.start();
    spotEvents?.start();
    active = scheduler;
    activeFleet = fleet || undefined;
    let stopped: Promise<void> | undefined;
    const stop = () => {
      active = undefined;
      activeFleet = undefined;
      // Each stop aborts its loop's signal before its first await: no pass starts after this.
      // Instances keep running: the next holder adopts them from the fleet records.
      stopped ??= Promise.all([
        scheduler.stop(),
        sweep.stop(),
        notifier.stop(),
        spendLog?.stop(),
        spotEvents?.stop(),
        fleet?.stop(),
      ]).then(() => undefined);
      return stopped;
    };
    tenure.signal.addEventListener("abort", () => void stop(), { once: true });
    return { stop };
  };
  const url = await app.listen({ host: config.api.host, port: config.api.port });
  // The first look at the lease: its outcome is logged (active, or standing by).
  await leadership.start(startLoops);
  let closed: Promise<void> | undefined;
  return {
    url,
    holder,
    close() {
      closed ??= (async () => {
        await app.close();
        // Stops the loops of a tenure, then releases the lease.
        await leadership.stop();
        await provided?.close();
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
  // The first line says which release runs, so a log alone tells which code wrote it.
  logger.info({ version: VERSION, node: process.version }, "scheduler starting");
  const clients = createAwsClients({ timeouts: config.aws });
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
