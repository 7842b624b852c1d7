/**
 * The task registry: turns a validated TaskSpec into a running TaskRunner. Adding a task means
 * adding its option schema in `src/shared/schemas/tasks.ts` and a case here.
 */
import { type Clock, systemClock } from "../../shared/clock.ts";
import type { EgressPolicy } from "../../shared/egress.ts";
import type { Logger } from "../../shared/logger.ts";
import type { TaskSpec } from "../../shared/schemas/tasks.ts";
import { BudgetPeers, type PeerStore } from "../budget/budget-peers.ts";
import { createHttpEnrichRunner } from "./http-enrich.ts";
import type { TaskRunner } from "./task.ts";
import { createTransformRunner } from "./transform.ts";

export interface TaskRunnerDeps {
  logger: Logger;
  /** Where `transform` plugins live (SHARDFLEET_PLUGIN_DIR). */
  pluginDir: string;
  /** @default systemClock */
  clock?: Clock;
  /** Uniform in [0, 1) for backoff jitter. @default Math.random */
  random?: () => number;
  /** Where `http-enrich` may connect (SHARDFLEET_EGRESS_ALLOW). @default PUBLIC_ONLY */
  egress?: EgressPolicy;
  /**
   * Where this worker counts the operation's workers sharing an `http-enrich` rateLimit
   * (with `options.operationId`). @default none: a rateLimit is this worker's alone
   */
  budgetPeers?: { store: PeerStore; instanceId: string };
}

export interface TaskRunnerOptions {
  /** The operation's input headers; templates naming other columns fail at creation. */
  headers?: readonly string[];
  /** The operation's id (`http-enrich` idempotency keys). */
  operationId?: string;
  /** Worker threads for `transform`. @default os.availableParallelism() */
  threads?: number;
}

/**
 * Creates the runner for `spec`. Rejects with a ShardfleetError (SPEC_INVALID for a template
 * naming an unknown column, TASK_FAILED for a missing or broken plugin) that names the problem.
 */
export async function createTaskRunner(
  spec: TaskSpec,
  deps: TaskRunnerDeps,
  options: TaskRunnerOptions = {},
): Promise<TaskRunner> {
  const logger = deps.logger.child({ task: spec.name });
  switch (spec.name) {
    case "http-enrich": {
      const peers = deps.budgetPeers;
      // With a rateLimit the record divides the budget (a PUT and a LIST every 2 s per worker,
      // about $0.02 an hour at S3 request prices); without, it only reports what the source
      // sees, for the status (a PUT every 4 s, about $0.005 an hour).
      const share =
        peers && options.operationId !== undefined
          ? new BudgetPeers(
              { store: peers.store, clock: deps.clock ?? systemClock, logger },
              {
                operationId: options.operationId,
                instanceId: peers.instanceId,
                divides: spec.options.rateLimit !== undefined,
              },
            )
          : undefined;
      return createHttpEnrichRunner(
        {
          logger,
          ...(share ? { share } : {}),
          ...(deps.clock ? { clock: deps.clock } : {}),
          ...(deps.random ? { random: deps.random } : {}),
          ...(deps.egress ? { egress: deps.egress } : {}),
        },
        spec.options,
        {
          ...(options.headers ? { headers: options.headers } : {}),
          ...(options.operationId === undefined ? {} : { operationId: options.operationId }),
        },
      );
    }
    case "transform":
      return createTransformRunner({ logger }, spec.options, {
        pluginDir: deps.pluginDir,
        ...(options.threads === undefined ? {} : { threads: options.threads }),
        ...(options.headers ? { headers: options.headers } : {}),
      });
  }
}
