/**
 * What the fleet manager says about operations: that one waits for capacity (or no longer does),
 * written into its own fleet record (./fleet-records.ts) and shown by the operation view as
 * `waiting-for-capacity`; and, when the policy gives up on capacity, a request to the operation
 * state machine (../../operation-lifecycle.ts) to fail it. The manager never writes a manifest:
 * a fail the state machine refuses (the operation is merging or has ended) changes nothing.
 * The policy decides a fail once: one that could not be recorded (an S3 error, or the manifest
 * kept changing) is asked for again every pass (`retryFailures`) until it is.
 */
import type { Clock } from "../../../shared/clock.ts";
import type { Logger } from "../../../shared/logger.ts";
import type { Manifest } from "../../../shared/schemas/operation.ts";
import type { OperationLifecycle } from "../../operation-lifecycle.ts";
import type { FleetRecords } from "./fleet-records.ts";

export interface OperationStatusesDeps {
  clock: Clock;
  logger: Logger;
  records: FleetRecords;
  lifecycle: OperationLifecycle;
  /** Operations known to be finished (the loop never reads them again): a failed one joins. */
  terminal: Set<string>;
}

export class OperationStatuses {
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #records: FleetRecords;
  readonly #lifecycle: OperationLifecycle;
  readonly #terminal: Set<string>;
  /** Fails decided but not recorded yet, by operation. */
  readonly #unrecorded = new Map<string, { code: string; message: string }>();

  constructor(deps: OperationStatusesDeps) {
    this.#clock = deps.clock;
    this.#log = deps.logger;
    this.#records = deps.records;
    this.#lifecycle = deps.lifecycle;
    this.#terminal = deps.terminal;
  }

  /** The operation waits for capacity since `since` (ms), for `reason`. */
  setWaiting(operationId: string, since: number, reason: string): void {
    this.#records.wait(operationId, { since, reason });
    this.#records.event(operationId, "waiting-for-capacity", reason);
  }

  /** Capacity is live again: the operation no longer waits. */
  clearWaiting(operationId: string): void {
    this.#records.wait(operationId, undefined);
    this.#records.event(
      operationId,
      "capacity-restored",
      "capacity is live again; no longer waiting",
    );
  }

  /**
   * Asks the state machine to fail the operation for lack of capacity. Throws when that could
   * not be recorded (S3 error, or the manifest kept changing); `retryFailures` asks again.
   */
  async failOperation(
    operationId: string,
    code: string,
    message: string,
    manifests: Map<string, Manifest>,
    signal: AbortSignal,
  ): Promise<void> {
    this.#unrecorded.set(operationId, { code, message });
    const result = await this.#lifecycle.apply(
      operationId,
      "failForCapacity",
      { error: { code, message }, finishedAt: new Date(this.#clock.now()).toISOString() },
      signal,
    );
    if (result.outcome !== "contended") this.#unrecorded.delete(operationId);
    switch (result.outcome) {
      case "applied":
        manifests.set(operationId, result.manifest);
        this.#terminal.add(operationId);
        this.#records.wait(operationId, undefined);
        this.#records.event(operationId, "operation-failed", `${code}: ${message}`);
        this.#log.error({ operationId, code }, `operation failed: ${message}`);
        return;
      case "not-allowed":
        this.#log.info(
          { operationId, code, status: result.from },
          `not failing the operation for lack of capacity: it is ${result.from}`,
        );
        return;
      case "gone":
        return;
      case "contended":
        throw new Error(
          `could not fail operation ${operationId}: its manifest kept changing (${result.attempts} tries)`,
        );
    }
  }

  /** Asks again for every fail not recorded yet (one pass's S3 trouble must not lose it). */
  async retryFailures(manifests: Map<string, Manifest>, signal: AbortSignal): Promise<void> {
    for (const [operationId, { code, message }] of [...this.#unrecorded]) {
      await this.failOperation(operationId, code, message, manifests, signal).catch(
        (err: unknown) => {
          if (signal.aborted) throw err;
          this.#log.warn({ err, operationId }, "could not fail the operation yet; next pass");
        },
      );
    }
  }
}
