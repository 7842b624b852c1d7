/**
 * Logs the fleet's hourly spend once a minute (`{hourlyUsd}`, message "fleet spend"), which
 * the AWS stack's log metric filter turns into the CloudWatch metric its spend alarm watches
 * (pulumi/monitoring.ts): CloudWatch gets the number without the scheduler calling CloudWatch.
 */
import { runEvery, sharedAbortController } from "../../shared/async.ts";
import type { Clock } from "../../shared/clock.ts";
import type { Logger } from "../../shared/logger.ts";

/** Must match SPEND_LOG_MESSAGE in pulumi/monitoring.ts. */
export const SPEND_LOG_MESSAGE = "fleet spend";

export class SpendLog {
  readonly #abort = sharedAbortController();
  #loop: Promise<void> | undefined;

  constructor(
    readonly deps: {
      spend: { hourlyUsd(signal?: AbortSignal): Promise<number> };
      logger: Logger;
      clock: Clock;
    },
    readonly options: { intervalMs?: number } = {},
  ) {}

  start(): void {
    this.#loop ??= runEvery(
      async (signal) => {
        const hourlyUsd = await this.deps.spend.hourlyUsd(signal);
        this.deps.logger.info({ hourlyUsd: Math.round(hourlyUsd * 1e6) / 1e6 }, SPEND_LOG_MESSAGE);
      },
      {
        intervalMs: this.options.intervalMs ?? 60_000,
        signal: this.#abort.signal,
        sleep: (ms, signal) => this.deps.clock.sleep(ms, signal),
        onError: (err) => this.deps.logger.warn({ err }, "could not work out the fleet's spend"),
      },
    );
  }

  async stop(): Promise<void> {
    this.#abort.abort(new Error("stopping"));
    await this.#loop;
  }
}
