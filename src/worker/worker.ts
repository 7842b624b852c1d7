/**
 * One worker: the consumer loop, the shard processor and the spot interruption watcher wired
 * together. `main.ts` builds one from the environment; tests and benchmarks build them in
 * process against the local servers.
 *
 * A notice from the watcher (a spot interruption, or a rebalance recommendation when opted in)
 * drains the consumer exactly like SIGTERM: no more receives, `drainGraceMs` for the rows in
 * flight, then a final checkpoint per shard and its message visible again at once.
 */
import { type Clock, systemClock } from "../shared/clock.ts";
import type { EgressPolicy } from "../shared/egress.ts";
import type { Logger } from "../shared/logger.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import { writeWorkerReport } from "../shared/records/worker-report.ts";
import { AttemptRecords } from "./attempt-records.ts";
import { staleAfterMs } from "./attempts.ts";
import { Consumer, type ConsumerQueue } from "./consumer.ts";
import { type InterruptionNotice, InterruptionWatcher } from "./interruption-watcher.ts";
import type { RunnerFactory } from "./operation-cache.ts";
import { ShardProcessor } from "./shard-processor.ts";

export interface WorkerDeps {
  store: ObjectStore;
  queue: ConsumerQueue;
  logger: Logger;
  /** @default systemClock */
  clock?: Clock;
  /** @default the task registry */
  createRunner?: RunnerFactory;
}

export interface WorkerOptions {
  instanceId: string;
  market: "spot" | "on-demand";
  pluginDir: string;
  /** Where tasks may connect (SHARDFLEET_EGRESS_ALLOW). @default PUBLIC_ONLY */
  egress?: EgressPolicy;
  queues: { work: string; straggler?: string | undefined; dlq?: string | undefined };
  /** @default 2 */
  shardsInFlight?: number;
  /** @default 60 */
  visibilityTimeoutSeconds?: number;
  /** @default 20 */
  pollWaitSeconds?: number;
  /** Time in-flight rows get after a notice or stop() before the final checkpoint. @default 2000 */
  drainGraceMs?: number;
  /** Share of the time between checkpoints their writes may take (see ShardProcessor). @default 0.01 */
  checkpointBudget?: number;
  /**
   * The instance metadata service to watch for notices, or false not to watch (off EC2 with no
   * endpoint, AWS_EC2_METADATA_DISABLED). @default false
   */
  imds?:
    | false
    | {
        endpoint?: string;
        /** @default 5000 */
        pollIntervalMs?: number;
        /** @default false */
        drainOnRebalance?: boolean;
      };
}

export class Worker {
  readonly consumer: Consumer;
  readonly processor: ShardProcessor;
  readonly watcher: InterruptionWatcher | undefined;
  readonly #logger: Logger;
  readonly #drainGraceMs: number;
  readonly #report: () => Promise<void>;
  #notice: InterruptionNotice | undefined;

  constructor(deps: WorkerDeps, options: WorkerOptions) {
    this.#logger = deps.logger;
    this.#drainGraceMs = options.drainGraceMs ?? 2000;
    const clock = deps.clock ?? systemClock;
    this.#report = () =>
      reportWhenUp(
        { store: deps.store, clock, logger: deps.logger },
        { instanceId: options.instanceId, market: options.market },
      );
    // The process's one owner of attempt records: its running attempts are never relabelled.
    const attempts = new AttemptRecords(
      { store: deps.store, clock: deps.clock ?? systemClock },
      {
        instanceId: options.instanceId,
        market: options.market,
        staleAfterMs: staleAfterMs(options.visibilityTimeoutSeconds ?? 60),
      },
    );
    this.processor = new ShardProcessor(
      {
        store: deps.store,
        logger: deps.logger,
        attempts,
        ...(deps.clock ? { clock: deps.clock } : {}),
        ...(deps.createRunner ? { createRunner: deps.createRunner } : {}),
      },
      {
        instanceId: options.instanceId,
        market: options.market,
        pluginDir: options.pluginDir,
        ...(options.egress ? { egress: options.egress } : {}),
        ...(options.visibilityTimeoutSeconds === undefined
          ? {}
          : { visibilityTimeoutSeconds: options.visibilityTimeoutSeconds }),
        ...(options.checkpointBudget === undefined
          ? {}
          : { checkpointBudget: options.checkpointBudget }),
      },
    );
    this.consumer = new Consumer(
      {
        queue: deps.queue,
        handler: this.processor,
        logger: deps.logger,
        ...(deps.clock ? { clock: deps.clock } : {}),
      },
      {
        queues: options.queues,
        market: options.market,
        stopGraceMs: this.#drainGraceMs,
        ...(options.shardsInFlight === undefined ? {} : { shardsInFlight: options.shardsInFlight }),
        ...(options.visibilityTimeoutSeconds === undefined
          ? {}
          : { visibilityTimeoutSeconds: options.visibilityTimeoutSeconds }),
        ...(options.pollWaitSeconds === undefined
          ? {}
          : { pollWaitSeconds: options.pollWaitSeconds }),
      },
    );
    this.watcher = options.imds
      ? new InterruptionWatcher(
          { logger: deps.logger, ...(deps.clock ? { clock: deps.clock } : {}) },
          options.imds,
        )
      : undefined;
  }

  /** The notice that drained this worker, if one did. */
  get notice(): InterruptionNotice | undefined {
    return this.#notice;
  }

  /**
   * Runs until stopped (by `stop()` or a notice) and drained; then closes the watcher and the
   * task runners. Rejects when the consumer fails (the queue is gone, access denied).
   */
  async run(): Promise<void> {
    const running = this.consumer.run();
    // The fleet manager counts this instance idle from here, not from its launch.
    void this.consumer.firstReceive.then(this.#report);
    if (this.watcher) {
      // Never delays the first receive: off EC2 the probe may take its timeout to fail.
      void this.watcher.start();
      void this.watcher.notice.then((notice) => {
        this.#notice = notice;
        this.#logger.warn(
          { kind: notice.kind, action: notice.action, reclaimAt: notice.time },
          "interruption notice; draining",
        );
        void this.consumer.stop({ graceMs: this.#drainGraceMs, reason: `${notice.kind} notice` });
      });
    }
    try {
      await running;
    } finally {
      await this.watcher?.close();
      await this.processor.close();
    }
  }

  /** Drains like a notice (SIGTERM). `graceMs: 0` a second time forces. */
  stop(options: { graceMs?: number; reason?: string } = {}): Promise<void> {
    return this.consumer.stop({
      graceMs: options.graceMs ?? this.#drainGraceMs,
      ...(options.reason === undefined ? {} : { reason: options.reason }),
    });
  }
}

/** Attempts at the worker report before giving up. */
const REPORT_ATTEMPTS = 5;

/** Writes the worker report, retrying a failed write with backoff (1, 2, 4, 8 s). */
async function reportWhenUp(
  deps: { store: ObjectStore; clock: Clock; logger: Logger },
  worker: { instanceId: string; market: "spot" | "on-demand" },
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await writeWorkerReport(deps, worker);
      deps.logger.debug("reported up to the fleet manager");
      return;
    } catch (err) {
      if (attempt >= REPORT_ATTEMPTS) {
        // Its first shard tells the fleet manager instead; idle, it goes at the boot deadline.
        deps.logger.warn({ err }, "could not report up to the fleet manager");
        return;
      }
      await deps.clock.sleep(1000 * 2 ** (attempt - 1)).catch(() => {});
    }
  }
}
