/**
 * Watches the EC2 instance metadata service (IMDSv2) for a spot interruption notice, two
 * minutes ahead of the reclaim, and (opt-in) for a rebalance recommendation. The worker drains
 * on the first one it sees.
 *
 * IMDSv2: PUT `latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds` gives a session
 * token, refreshed before its TTL ends and whenever a read answers 401; reads send it as
 * `X-aws-ec2-metadata-token`. `latest/meta-data/spot/instance-action` answers 404 until a
 * notice exists, then 200 `{"action": "terminate", "time": "…Z"}`;
 * `latest/meta-data/events/recommendations/rebalance` answers 200 `{"noticeTime": "…Z"}`.
 *
 * States: starting → watching → noticed (the notice promise resolved; polling stopped), or
 * starting → disabled (no metadata service answered at start: not on EC2 and no endpoint set;
 * one warning, then silence), and → closed from any of them.
 *
 * A read that fails while watching (timeout, 5xx) is retried at the next poll; the first failure
 * is logged as a warning, the next ones at debug until the service answers again.
 */
import { Agent, request } from "undici";
import { type Clock, systemClock } from "../shared/clock.ts";
import type { Logger } from "../shared/logger.ts";

/** The standard IMDS address (what AWS_EC2_METADATA_SERVICE_ENDPOINT overrides). */
export const DEFAULT_IMDS_ENDPOINT = "http://169.254.169.254/";

const TOKEN_PATH = "latest/api/token";
const INSTANCE_ACTION_PATH = "latest/meta-data/spot/instance-action";
const REBALANCE_PATH = "latest/meta-data/events/recommendations/rebalance";

export interface InterruptionNotice {
  /** `interruption`: spot/instance-action. `rebalance`: a rebalance recommendation. */
  kind: "interruption" | "rebalance";
  /** The instance action (`terminate`, `stop`, `hibernate`), for an interruption. */
  action?: string;
  /** When the instance will be reclaimed (interruption) or the recommendation's time. */
  time?: string;
  /** When this watcher saw it (clock ms). */
  seenAt: number;
}

export type WatcherState = "starting" | "watching" | "disabled" | "noticed" | "closed";

export interface InterruptionWatcherDeps {
  logger: Logger;
  /** Poll timing and token expiry. @default systemClock */
  clock?: Clock;
}

export interface InterruptionWatcherOptions {
  /** Base URL of the metadata service. @default DEFAULT_IMDS_ENDPOINT */
  endpoint?: string;
  /** Time between polls. @default 5000 */
  pollIntervalMs?: number;
  /** Treat a rebalance recommendation as a notice too. @default false */
  drainOnRebalance?: boolean;
  /** Session token lifetime asked for (1–21600 s). @default 21600 */
  tokenTtlSeconds?: number;
  /** Deadline of one metadata request (it is a local link: answers take milliseconds). @default 1000 */
  requestTimeoutMs?: number;
}

/** The metadata service answered with an unexpected status. */
class ImdsStatusError extends Error {
  readonly status: number;

  constructor(status: number, what: string) {
    super(`instance metadata service answered ${status} to ${what}`);
    this.name = "ImdsStatusError";
    this.status = status;
  }
}

interface Answer {
  status: number;
  body: string;
}

export class InterruptionWatcher {
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #endpoint: string;
  readonly #pollIntervalMs: number;
  readonly #drainOnRebalance: boolean;
  readonly #ttlSeconds: number;
  readonly #timeoutMs: number;
  readonly #agent: Agent;
  readonly #closing = new AbortController();
  #state: WatcherState = "starting";
  #token: { value: string; refreshAt: number } | undefined;
  #loop: Promise<void> | undefined;
  #failures = 0;
  #resolveNotice!: (notice: InterruptionNotice) => void;

  /** Resolves with the first notice seen; never rejects (pending forever without one). */
  readonly notice: Promise<InterruptionNotice>;

  constructor(deps: InterruptionWatcherDeps, options: InterruptionWatcherOptions = {}) {
    this.#logger = deps.logger;
    this.#clock = deps.clock ?? systemClock;
    const endpoint = options.endpoint ?? DEFAULT_IMDS_ENDPOINT;
    this.#endpoint = endpoint.endsWith("/") ? endpoint : `${endpoint}/`;
    this.#pollIntervalMs = options.pollIntervalMs ?? 5000;
    this.#drainOnRebalance = options.drainOnRebalance ?? false;
    this.#ttlSeconds = options.tokenTtlSeconds ?? 21_600;
    this.#timeoutMs = options.requestTimeoutMs ?? 1000;
    this.#agent = new Agent({
      connect: { timeout: this.#timeoutMs },
      headersTimeout: this.#timeoutMs,
      bodyTimeout: this.#timeoutMs,
    });
    this.notice = new Promise((resolve) => {
      this.#resolveNotice = resolve;
    });
  }

  get state(): WatcherState {
    return this.#state;
  }

  get endpoint(): string {
    return this.#endpoint;
  }

  /**
   * Probes the service (gets a token) and starts polling. Resolves true when watching, false
   * when disabled: nothing answered (one warning is logged), or the service refuses IMDS (403).
   */
  async start(): Promise<boolean> {
    if (this.#state !== "starting") return this.#state === "watching";
    try {
      await this.#fetchToken();
    } catch (err) {
      if (this.#closing.signal.aborted) return false;
      const refused = err instanceof ImdsStatusError && err.status === 403;
      if (!(err instanceof ImdsStatusError) || refused) {
        this.#state = "disabled";
        this.#logger.warn(
          { err, endpoint: this.#endpoint },
          refused
            ? "instance metadata service refuses requests; spot interruption notices will not be seen"
            : "instance metadata service unreachable; spot interruption notices will not be seen",
        );
        return false;
      }
      // It answered, just not well (a 5xx): there is a service; the polls retry.
      this.#noteFailure(err);
    }
    if (this.#closing.signal.aborted) return false;
    this.#state = "watching";
    this.#logger.info(
      {
        endpoint: this.#endpoint,
        pollIntervalMs: this.#pollIntervalMs,
        drainOnRebalance: this.#drainOnRebalance,
      },
      "watching for spot interruption notices",
    );
    this.#loop = this.#run();
    return true;
  }

  /** Stops polling and closes connections. */
  async close(): Promise<void> {
    if (this.#state !== "noticed") this.#state = "closed";
    this.#closing.abort(new Error("interruption watcher closed"));
    await this.#loop;
    await this.#agent.close().catch(() => {});
  }

  async #run(): Promise<void> {
    const signal = this.#closing.signal;
    while (!signal.aborted) {
      try {
        const notice = await this.#check();
        if (this.#failures > 0) {
          this.#logger.info(
            { failures: this.#failures },
            "instance metadata service answers again",
          );
        }
        this.#failures = 0;
        if (notice) {
          this.#state = "noticed";
          // (Not `time`: that is the log line's own field.)
          this.#logger.warn(
            { kind: notice.kind, action: notice.action, reclaimAt: notice.time },
            `${notice.kind} notice from the instance metadata service`,
          );
          this.#resolveNotice(notice);
          return;
        }
      } catch (err) {
        if (signal.aborted) return;
        this.#noteFailure(err);
      }
      try {
        await this.#clock.sleep(this.#pollIntervalMs, signal);
      } catch {
        return;
      }
    }
  }

  #noteFailure(err: unknown): void {
    this.#failures++;
    if (this.#failures === 1) {
      this.#logger.warn({ err }, "cannot read the instance metadata service; retrying each poll");
    } else {
      this.#logger.debug({ err, failures: this.#failures }, "instance metadata service failing");
    }
  }

  /** One poll: the notice if there is one. */
  async #check(): Promise<InterruptionNotice | undefined> {
    const action = await this.#read(INSTANCE_ACTION_PATH);
    if (action.status === 200) {
      const parsed = parseJson(action.body);
      return {
        kind: "interruption",
        ...(typeof parsed?.action === "string" ? { action: parsed.action } : {}),
        ...(typeof parsed?.time === "string" ? { time: parsed.time } : {}),
        seenAt: this.#clock.now(),
      };
    }
    if (action.status !== 404) throw new ImdsStatusError(action.status, INSTANCE_ACTION_PATH);
    if (!this.#drainOnRebalance) return undefined;
    const rebalance = await this.#read(REBALANCE_PATH);
    if (rebalance.status === 200) {
      const parsed = parseJson(rebalance.body);
      return {
        kind: "rebalance",
        ...(typeof parsed?.noticeTime === "string" ? { time: parsed.noticeTime } : {}),
        seenAt: this.#clock.now(),
      };
    }
    if (rebalance.status !== 404) throw new ImdsStatusError(rebalance.status, REBALANCE_PATH);
    return undefined;
  }

  /** GET with the session token; a 401 gets a fresh token and one more try. */
  async #read(path: string): Promise<Answer> {
    const token = await this.#currentToken();
    const answer = await this.#http("GET", path, { "x-aws-ec2-metadata-token": token });
    if (answer.status !== 401) return answer;
    const fresh = await this.#fetchToken();
    return this.#http("GET", path, { "x-aws-ec2-metadata-token": fresh });
  }

  async #currentToken(): Promise<string> {
    if (this.#token && this.#clock.now() < this.#token.refreshAt) return this.#token.value;
    return this.#fetchToken();
  }

  async #fetchToken(): Promise<string> {
    const requestedAt = this.#clock.now();
    const answer = await this.#http("PUT", TOKEN_PATH, {
      "x-aws-ec2-metadata-token-ttl-seconds": String(this.#ttlSeconds),
    });
    if (answer.status !== 200 || answer.body.trim() === "") {
      this.#token = undefined;
      throw new ImdsStatusError(answer.status, TOKEN_PATH);
    }
    // Refresh a little before it expires (a minute, or a quarter of a short TTL).
    const margin = Math.min(60_000, this.#ttlSeconds * 250);
    this.#token = {
      value: answer.body.trim(),
      refreshAt: requestedAt + this.#ttlSeconds * 1000 - margin,
    };
    return this.#token.value;
  }

  async #http(
    method: "GET" | "PUT",
    path: string,
    headers: Record<string, string>,
  ): Promise<Answer> {
    const res = await request(new URL(path, this.#endpoint), {
      method,
      headers,
      dispatcher: this.#agent,
      signal: AbortSignal.any([this.#closing.signal, AbortSignal.timeout(this.#timeoutMs)]),
    });
    const body = await res.body.text();
    return { status: res.statusCode, body };
  }
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return value && typeof value === "object" ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
