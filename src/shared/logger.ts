/**
 * pino logging: JSON lines to stdout; human-readable only when asked (a TTY with
 * SHARDFLEET_LOG_PRETTY=true). Bind ids with `logger.child({ operationId, shardId })`.
 */
import { type Logger, pino } from "pino";

export type { Logger };

export interface LoggerOptions {
  /** @default "info" */
  level?: string;
  /** Pretty-print (development only). @default false */
  pretty?: boolean;
  /** Fields bound to every line, e.g. `{ component: "worker", instanceId }`. */
  base?: Record<string, unknown>;
  /** Where JSON lines go. @default stdout */
  destination?: NodeJS.WritableStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const pinoOptions = {
    level: options.level ?? "info",
    base: options.base ?? {},
    timestamp: pino.stdTimeFunctions.isoTime,
    // Bearer tokens never reach a log, whoever logs a request's headers.
    redact: {
      paths: ["req.headers.authorization", "headers.authorization"],
      censor: "[redacted]",
    },
  };
  if (options.pretty) {
    return pino({
      ...pinoOptions,
      transport: {
        target: "pino-pretty",
        options: { colorize: true, translateTime: "SYS:HH:MM:ss" },
      },
    });
  }
  return options.destination
    ? pino(pinoOptions, options.destination as pino.DestinationStream)
    : pino(pinoOptions);
}

/** A logger that drops everything (tests, library use). */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
