/**
 * One long-lived loop with an explicit lifecycle, shared by the scheduler, the fleet manager and
 * the spot-event consumer instead of each keeping its own copy:
 *
 *   idle → running (start) → draining (stop: abort the pass in flight, wait for it, drain) → stopped
 *
 * A pass runs, then the loop pauses `intervalMs` on the injected clock, then the next pass runs:
 * passes never overlap. A pass that throws is logged and the loop goes on (after a backoff when
 * one is configured): a transient fault must not stop a long-running component.
 */
import { sharedAbortController } from "./async.ts";
import type { Clock } from "./clock.ts";
import type { Logger } from "./logger.ts";

export type ServiceState = "idle" | "running" | "draining" | "stopped";

/** One pass of the loop; `signal` aborts when the service stops. */
export type Pass = (signal: AbortSignal) => Promise<void>;

export interface PeriodicServiceDeps {
  clock: Clock;
  logger: Logger;
}

export interface PeriodicServiceOptions {
  /** Names the service in its log lines and errors ("scheduler", "fleet manager"). */
  name: string;
  /** Pause after a pass. 0 runs the next pass at once (for a pass that long-polls). */
  intervalMs: number;
  /**
   * Pause after a failed pass: `firstMs`, doubled on each failure in a row up to `maxMs`.
   * @default the same pause as after a pass that succeeded
   */
  errorBackoff?: { firstMs: number; maxMs: number };
  /** Level of the log line of a failed pass. @default "error" */
  errorLevel?: "warn" | "error";
  /**
   * Runs on stop after the last pass has unwound, before the state becomes `stopped` (wait for
   * background jobs, flush records). Its error is logged; the service stops anyway.
   * @default nothing
   */
  drain?: () => Promise<void>;
}

/** The pause after `failures` failed passes in a row (pure, for the loop and its tests). */
export function pauseAfter(
  failures: number,
  intervalMs: number,
  backoff?: { firstMs: number; maxMs: number },
): number {
  if (failures === 0 || !backoff) return intervalMs;
  return Math.min(backoff.firstMs * 2 ** (failures - 1), backoff.maxMs);
}

export class PeriodicService {
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #options: PeriodicServiceOptions;
  readonly #pass: Pass;
  readonly #abort = sharedAbortController();
  /** Aborted by `wake` to cut the pause short; replaced once used. */
  #wake = new AbortController();
  #state: ServiceState = "idle";
  #loop: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;

  constructor(deps: PeriodicServiceDeps, options: PeriodicServiceOptions, pass: Pass) {
    this.#clock = deps.clock;
    this.#log = deps.logger;
    this.#options = options;
    this.#pass = pass;
  }

  get state(): ServiceState {
    return this.#state;
  }

  /** Aborts when the service stops: for work a pass starts in the background. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** Starts the loop (its first pass at once); `fields` go into the "started" log line. */
  start(fields: Record<string, unknown> = {}): void {
    const { name } = this.#options;
    if (this.#state !== "idle") throw new Error(`${name} cannot start: it is ${this.#state}`);
    this.#state = "running";
    this.#loop = this.#run(this.#abort.signal);
    this.#log.info(fields, `${name} started`);
  }

  /**
   * Aborts the pass in flight and resolves once it has unwound and `drain` has run. Before a
   * start it does nothing; called again while draining, it resolves with the first call.
   */
  stop(): Promise<void> {
    if (this.#state === "running") this.#stopping = this.#stop();
    return this.#stopping ?? Promise.resolve();
  }

  /**
   * Runs the next pass now instead of after the pause. Called during a pass, the next pass
   * follows it at once.
   */
  wake(): void {
    this.#wake.abort();
  }

  async #stop(): Promise<void> {
    const { name, drain } = this.#options;
    this.#state = "draining";
    this.#abort.abort(new Error(`${name} stopping`));
    await this.#loop;
    if (drain) {
      await drain().catch((err: unknown) => this.#log.error({ err }, `${name}: draining failed`));
    }
    this.#state = "stopped";
    this.#log.info(`${name} stopped`);
  }

  async #run(signal: AbortSignal): Promise<void> {
    const { name, intervalMs, errorBackoff, errorLevel = "error" } = this.#options;
    let failures = 0;
    while (!signal.aborted) {
      try {
        await this.#pass(signal);
        failures = 0;
      } catch (err) {
        if (signal.aborted) break;
        failures++;
        this.#log[errorLevel](
          { err, failures, retryInMs: pauseAfter(failures, intervalMs, errorBackoff) },
          `${name} pass failed; retrying`,
        );
      }
      try {
        await this.#pause(pauseAfter(failures, intervalMs, errorBackoff), signal);
      } catch {
        break;
      }
    }
  }

  /** The pause between passes, ended early by `wake`; a stop rejects it. */
  async #pause(ms: number, signal: AbortSignal): Promise<void> {
    const wake = this.#wake.signal;
    if (ms <= 0 || wake.aborted) {
      if (wake.aborted) this.#wake = new AbortController();
      // Still yield to the event loop: a pass that finishes without I/O must not spin.
      await new Promise((resolve) => setImmediate(resolve));
      signal.throwIfAborted();
      return;
    }
    try {
      await this.#clock.sleep(ms, AbortSignal.any([signal, wake]));
    } catch (err) {
      if (signal.aborted || !wake.aborted) throw err;
    } finally {
      if (wake.aborted) this.#wake = new AbortController();
    }
  }
}
