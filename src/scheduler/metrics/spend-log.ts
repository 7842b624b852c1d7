/**
 * Logs the fleet's hourly spend once a minute (`{hourlyUsd}`, message "fleet spend"), which
 * the AWS stack's log metric filter turns into the CloudWatch metric its spend alarm watches
 * (pulumi/monitoring.ts): CloudWatch gets the number without the scheduler calling CloudWatch.
 */
import type { Clock } from "../../shared/clock.ts";
import type { Logger } from "../../shared/logger.ts";
import { PeriodicService } from "../../shared/periodic-service.ts";

/** Must match SPEND_LOG_MESSAGE in pulumi/monitoring.ts. */
export const SPEND_LOG_MESSAGE = "fleet spend";

export class SpendLog {
  readonly #service: PeriodicService;

  constructor(
    deps: {
      spend: { hourlyUsd(signal?: AbortSignal): Promise<number> };
      logger: Logger;
      clock: Clock;
    },
    options: { intervalMs?: number } = {},
  ) {
    this.#service = new PeriodicService(
      { clock: deps.clock, logger: deps.logger },
      { name: "spend log", intervalMs: options.intervalMs ?? 60_000, errorLevel: "warn" },
      async (signal) => {
        const hourlyUsd = await deps.spend.hourlyUsd(signal);
        deps.logger.info({ hourlyUsd: Math.round(hourlyUsd * 1e6) / 1e6 }, SPEND_LOG_MESSAGE);
      },
    );
  }

  start(): void {
    this.#service.start();
  }

  stop(): Promise<void> {
    return this.#service.stop();
  }
}
