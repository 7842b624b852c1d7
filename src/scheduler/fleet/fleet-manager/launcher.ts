/**
 * Carrying out one launch decision: the port request (a fresh client token, the same one on the
 * retries of a RetryableError, so a retry never launches twice), the instances it started tracked
 * at once (even when it also reported errors), its result or thrown error folded back into the
 * policy's memory (capacity errors cool pools; config and permission errors fail the operation),
 * and the fleet events that explain it — including, once, when worker capacity falls back to
 * on-demand. `launch` says whether the result had errors: the loop then re-plans.
 */
import {
  CapacityConfigError,
  type CapacityError,
  type CapacityProvider,
  type LaunchRequest,
  type LaunchResult,
  newClientToken,
  poolLabel,
} from "../../../shared/capacity.ts";
import type { Clock } from "../../../shared/clock.ts";
import { describeError, RetryableError } from "../../../shared/errors.ts";
import type { Logger } from "../../../shared/logger.ts";
import {
  type FleetMemory,
  fleetInstancesFrom,
  type LaunchDecision,
  recordLaunchError,
  recordLaunchOutcome,
  toLaunchRequest,
} from "../policy.ts";
import type { FleetRecords } from "./fleet-records.ts";
import type { InstanceRoster } from "./instance-roster.ts";
import type { TrackedInstance } from "./tracked-instance.ts";

/** The policy's memory, kept by the loop: a launch folds its outcome in at once. */
export interface MemoryCell {
  get(): FleetMemory;
  set(memory: FleetMemory): void;
}

export interface LauncherDeps {
  capacity: CapacityProvider;
  clock: Clock;
  logger: Logger;
  roster: InstanceRoster;
  records: FleetRecords;
  memory: MemoryCell;
}

export interface LauncherOptions {
  /** This fleet's name (the `shardfleet:fleet` tag of every instance launched). */
  fleet: string;
  /** Retries of a launch call that threw a RetryableError (same request, same token). */
  launchRetries: number;
  /** First retry delay, doubled each retry. */
  launchRetryDelayMs: number;
}

export class Launcher {
  readonly #capacity: CapacityProvider;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #roster: InstanceRoster;
  readonly #records: FleetRecords;
  readonly #memory: MemoryCell;
  readonly #fleet: string;
  readonly #launchRetries: number;
  readonly #launchRetryDelayMs: number;
  /** Operations whose worker capacity is on-demand because spot is cooling. */
  readonly #onDemandFallback = new Set<string>();

  constructor(deps: LauncherDeps, options: LauncherOptions) {
    this.#capacity = deps.capacity;
    this.#clock = deps.clock;
    this.#log = deps.logger;
    this.#roster = deps.roster;
    this.#records = deps.records;
    this.#memory = deps.memory;
    this.#fleet = options.fleet;
    this.#launchRetries = options.launchRetries;
    this.#launchRetryDelayMs = options.launchRetryDelayMs;
  }

  /** Forgets an operation the loop no longer watches. */
  forget(operationId: string): void {
    this.#onDemandFallback.delete(operationId);
  }

  /** One launch decision; true when the result had errors (re-plan before launching more). */
  async launch(d: LaunchDecision, signal: AbortSignal): Promise<boolean> {
    const log = this.#log.child({ operationId: d.operationId });
    const pools = d.pools.map(poolLabel).join(", ");
    if (d.role === "worker") {
      // Said once when the fallback starts, not on every on-demand launch while it lasts.
      if (d.market === "spot") this.#onDemandFallback.delete(d.operationId);
      else if (!this.#onDemandFallback.has(d.operationId)) {
        this.#onDemandFallback.add(d.operationId);
        this.#records.event(
          d.operationId,
          "fallback-on-demand",
          `worker capacity falls back to on-demand: ${d.reason}`,
        );
      }
    }
    const request = toLaunchRequest(d, { fleet: this.#fleet, clientToken: newClientToken() });
    this.#records.event(
      d.operationId,
      "launch-requested",
      `requested ${d.count} ${d.market} ${d.role} instance(s) in ${pools}: ${d.reason}`,
      { clientToken: request.clientToken },
    );
    let result: LaunchResult;
    try {
      result = await this.#launchWithRetries(request, log, signal);
    } catch (err) {
      if (signal.aborted) throw err;
      this.#memory.set(recordLaunchError(this.#memory.get(), d, err));
      const fatal = err instanceof CapacityConfigError;
      this.#records.event(
        d.operationId,
        "launch-failed",
        `launch of ${d.count} ${d.market} instance(s) failed${fatal ? " (cannot be retried)" : ""}: ${describeError(err)}`,
      );
      log.error({ err, clientToken: request.clientToken }, "launch failed");
      return true;
    }
    const now = this.#clock.now();
    // fleetInstancesFrom maps `result.launched` one to one, in order.
    for (const [k, f] of fleetInstancesFrom(d, result.launched).entries()) {
      const availabilityZone = result.launched[k]?.availabilityZone;
      const t: TrackedInstance = {
        id: f.id,
        operationId: f.operationId,
        role: f.role,
        market: f.market,
        instanceType: f.instanceType,
        ...(availabilityZone ? { availabilityZone } : {}),
        state: f.state,
        launchedAt: f.launchedAt,
        since: now,
      };
      this.#roster.add(t);
    }
    this.#memory.set(recordLaunchOutcome(this.#memory.get(), d, result, now));
    const ids = result.launched.map((i) => i.instanceId).join(", ");
    if (result.errors.length === 0) {
      this.#records.event(
        d.operationId,
        "launch-fulfilled",
        `${result.launched.length} ${d.market} instance(s) launched: ${ids}`,
      );
    } else if (result.launched.length > 0) {
      this.#records.event(
        d.operationId,
        "launch-partial",
        `${result.launched.length} of ${d.count} ${d.market} instance(s) launched (${ids}); ${result.errors.length} error(s)`,
      );
    } else {
      this.#records.event(
        d.operationId,
        "launch-failed",
        `none of ${d.count} ${d.market} instance(s) launched`,
      );
    }
    for (const e of result.errors) {
      this.#records.event(d.operationId, "capacity-error", capacityErrorLine(e, d.market), {
        code: e.code,
        kind: e.kind,
        ...(e.pool ? { pool: poolLabel(e.pool) } : {}),
      });
    }
    log.info(
      {
        market: d.market,
        role: d.role,
        requested: d.count,
        launched: result.launched.length,
        errors: result.errors.length,
        clientToken: request.clientToken,
      },
      "launch carried out",
    );
    return result.errors.length > 0;
  }

  /** Retries a RetryableError with the SAME request (same client token): no double launch. */
  async #launchWithRetries(
    request: LaunchRequest,
    log: Logger,
    signal: AbortSignal,
  ): Promise<LaunchResult> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#capacity.launch(request, signal);
      } catch (err) {
        if (!(err instanceof RetryableError) || attempt >= this.#launchRetries || signal.aborted) {
          throw err;
        }
        const delay = this.#launchRetryDelayMs * 2 ** attempt;
        log.warn(
          { err, clientToken: request.clientToken, retryInMs: delay },
          "launch failed; retrying with the same client token",
        );
        await this.#clock.sleep(delay, signal);
      }
    }
  }
}

function capacityErrorLine(e: CapacityError, market: string): string {
  const where = e.pool ? ` in ${poolLabel(e.pool)}` : "";
  return `${e.code}${where} (${e.market ?? market}, ${e.kind}): ${e.message}`;
}
