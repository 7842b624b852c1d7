/**
 * `http-enrich`: one HTTP call per row over keep-alive undici connections per origin
 * (`connection-stack.ts`), up to `concurrency` requests in flight per worker, with retries (exponential backoff, full jitter, Retry-After)
 * on network errors, 429 and 5xx. The JSON response is mapped into result columns with
 * dotted paths.
 *
 * Templating: `{column}` in `url` and `body` is replaced by the row's cell (dates as ISO-8601,
 * empty cells as ""). In the URL values are encodeURIComponent-ed. In the body they are inserted
 * as-is, or JSON-string-escaped (without quotes) when the `content-type` header says JSON, so
 * `{"name": "{name}"}` stays valid JSON whatever the cell holds.
 */
import type { Dispatcher } from "undici";
import { type Clock, systemClock } from "../../shared/clock.ts";
import { type EgressPolicy, EgressRefusedError, PUBLIC_ONLY } from "../../shared/egress.ts";
import { guardedConnector, type HostLookup } from "../../shared/egress-connector.ts";
import { BadInputError, describeError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import type { EncodedCell, ResultRow } from "../../shared/schemas/cells.ts";
import { burstOf, type HttpEnrichOptions } from "../../shared/schemas/tasks.ts";
import {
  compileTemplate,
  render,
  type Template,
  urlTemplateShape,
} from "../../shared/url-template.ts";
import type { FleetShare, OriginCounters } from "../budget/budget-peers.ts";
import { TokenBucket } from "../budget/token-bucket.ts";
import { type AimdOptions, type AimdSignal, type AimdState, initialAimd, observe } from "./aimd.ts";
import { ConnectionStack } from "./connection-stack.ts";
import { Limiter } from "./limiter.ts";
import { type RequestAbort, RequestAborts } from "./request-aborts.ts";
import { childSignal, oneLine, type TaskContext, type TaskRow, type TaskRunner } from "./task.ts";

export interface HttpEnrichDeps {
  logger: Logger;
  /** Backoff sleeps and HTTP-date Retry-After go through it. @default systemClock */
  clock?: Clock;
  /** Uniform in [0, 1), for the jitter. @default Math.random */
  random?: () => number;
  /** Where calls may connect (checked on the resolved address). @default PUBLIC_ONLY */
  egress?: EgressPolicy;
  /** Host name resolution for the egress check. @default the system resolver */
  lookup?: HostLookup;
  /**
   * The operation's workers that share `rateLimit` (`BudgetPeers`, counted through S3).
   * @default this worker alone takes the whole budget
   */
  share?: FleetShare;
}

/** A share of one worker alone. */
const ALONE: FleetShare = {
  divisor: () => 1,
  hold: () => () => {},
  setReporter: () => {},
  close: async () => {},
};

type BodyReadable = Dispatcher.ResponseData["body"];

/** Most bytes a response body may have; a bigger one is the row's error, unread. */
export const MAX_RESPONSE_BYTES = 1024 * 1024;
/** Most characters a result cell may hold: Excel's own cell limit. A longer value is the row's error. */
export const MAX_CELL_CHARS = 32_767;

export interface HttpEnrichRunnerOptions {
  /** The input headers: every `{column}` in the templates must be one. Unchecked when absent. */
  headers?: readonly string[];
  /** Longest wait a Retry-After may ask for; a server asking an hour must not stall a shard. @default 60000 */
  maxRetryAfterMs?: number;
  /** Cap of one backoff step before jitter. @default 30000 */
  maxBackoffMs?: number;
  /**
   * The operation's id: idempotency keys are `<operationId>:<rowIndex>`. Without it no key is
   * sent (a bare row index would collide across operations at the source).
   */
  operationId?: string;
}

const jsonEscape = (s: string) => JSON.stringify(s).slice(1, -1);
const asIs = (s: string) => s;

/** Reads `a.b.0.c` out of parsed JSON; undefined when any step is missing. */
export function readPath(value: unknown, path: string): unknown {
  return readSteps(value, path.split("."));
}

function readSteps(value: unknown, steps: readonly string[]): unknown {
  let current = value;
  for (const step of steps) {
    if (current === null || typeof current !== "object") return undefined;
    current = (current as Record<string, unknown>)[step];
  }
  return current;
}

/** A JSON value as a result cell: scalars as they are, objects and arrays as JSON text. */
function toCell(value: unknown): EncodedCell {
  if (value === undefined || value === null) return null;
  if (typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") return Number.isFinite(value) ? value : String(value);
  return JSON.stringify(value);
}

/**
 * Milliseconds a `Retry-After` header asks for (delta-seconds or an HTTP date), or undefined
 * when absent or unreadable.
 */
export function parseRetryAfter(
  header: string | string[] | undefined,
  now: number,
): number | undefined {
  const value = (Array.isArray(header) ? header[0] : header)?.trim();
  if (!value) return undefined;
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

/**
 * A response body as text, or undefined when it has more than `max` bytes. A declared length
 * within `max` is read whole at once (undici holds the body to that length); a larger one is
 * not read at all; a body of unknown length is read chunk by chunk up to `max`.
 */
function readBody(
  res: { headers: Record<string, string | string[] | undefined>; body: BodyReadable },
  max: number,
): Promise<string | undefined> {
  const declared = res.headers["content-length"];
  const length = typeof declared === "string" && /^\d+$/.test(declared) ? Number(declared) : -1;
  if (length >= 0 && length <= max) return res.body.text();
  if (length > max) {
    res.body.destroy();
    return Promise.resolve(undefined);
  }
  return readBounded(res.body, max);
}

/**
 * The body as text, or undefined when it has more than `max` bytes (the rest is not read: the
 * connection is dropped).
 */
async function readBounded(
  body: AsyncIterable<Buffer> & { destroy(): unknown },
  max: number,
): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > max) {
      body.destroy();
      return undefined;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** One origin's adaptive concurrency: the semaphore and the policy state that sizes it. */
interface OriginGate {
  limiter: Limiter;
  aimd: AimdState;
  /** This worker's share of the origin's request budget, when the options set one. */
  bucket: TokenBucket | undefined;
  /** The latencies of every answered request summed (ms), for the mean the record reports. */
  latencyMsTotal: number;
}

/** Why an attempt failed, and whether another attempt may help. */
type AttemptOutcome =
  | { ok: true; row: ResultRow }
  | { ok: false; retry: boolean; problem: string; retryAfterMs?: number; throttled?: boolean };

export class HttpEnrichRunner implements TaskRunner {
  readonly columns: string[];
  readonly #options: HttpEnrichOptions;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #maxRetryAfterMs: number;
  readonly #maxBackoffMs: number;
  readonly #url: Template;
  /** `results` as [column, path steps], split once rather than per row. */
  readonly #results: ReadonlyArray<readonly [string, readonly string[]]>;
  readonly #body: Template | undefined;
  readonly #bodyEscape: (s: string) => string;
  readonly #limiter: Limiter;
  /** Keep-alive connections per origin. */
  readonly #connections = new Map<string, ConnectionStack>();
  readonly #gates = new Map<string, OriginGate>();
  readonly #egress: EgressPolicy;
  readonly #lookup: HostLookup | undefined;
  readonly #idempotencyHeader: string | undefined;
  readonly #operationId: string | undefined;
  readonly #share: FleetShare;
  /** One object for every `observe` (its settings are worked out once per object). */
  readonly #aimdOptions: AimdOptions;
  #closed = false;

  /** Throws BadInputError (SPEC_INVALID) naming an unknown column or a URL that cannot work. */
  constructor(
    deps: HttpEnrichDeps,
    options: HttpEnrichOptions,
    runnerOptions: HttpEnrichRunnerOptions = {},
  ) {
    this.#options = options;
    this.#clock = deps.clock ?? systemClock;
    this.#random = deps.random ?? Math.random;
    this.#egress = deps.egress ?? PUBLIC_ONLY;
    this.#lookup = deps.lookup;
    this.#maxRetryAfterMs = runnerOptions.maxRetryAfterMs ?? 60_000;
    this.#maxBackoffMs = runnerOptions.maxBackoffMs ?? 30_000;
    this.columns = Object.keys(options.results);
    this.#results = Object.entries(options.results).map(([c, path]) => [c, path.split(".")]);
    this.#url = compileTemplate(options.url);
    this.#body = options.body === undefined ? undefined : compileTemplate(options.body);
    const contentType = Object.entries(options.headers).find(
      ([name]) => name.toLowerCase() === "content-type",
    )?.[1];
    this.#bodyEscape = contentType?.toLowerCase().includes("json") ? jsonEscape : asIs;
    this.#limiter = new Limiter(options.concurrency);
    this.#aimdOptions = { max: options.concurrency };
    this.#operationId = runnerOptions.operationId;
    this.#share = deps.share ?? ALONE;
    this.#share.setReporter(() => this.stats());
    // GET is idempotent by definition; a key there only adds noise to the source's logs.
    this.#idempotencyHeader =
      options.idempotencyKey !== false && options.method !== "GET"
        ? options.idempotencyKey.header
        : undefined;

    if (runnerOptions.headers) {
      const known = new Set(runnerOptions.headers);
      for (const [where, template] of [
        ["url", this.#url],
        ["body", this.#body],
      ] as const) {
        const unknown = template?.columns.find((c) => !known.has(c));
        if (unknown !== undefined) {
          throw new BadInputError(
            "SPEC_INVALID",
            `http-enrich ${where}: unknown column {${unknown}} (columns: ${[...known].join(", ")})`,
            { details: { column: unknown } },
          );
        }
      }
    }
    // The scheme and URL syntax are fixed by the template; a host or port only by a row.
    const shape = urlTemplateShape(this.#url);
    if (!shape.ok) {
      throw new BadInputError("SPEC_INVALID", `http-enrich url: not a URL: ${options.url}`);
    }
    if (shape.protocol !== "http:" && shape.protocol !== "https:") {
      throw new BadInputError(
        "SPEC_INVALID",
        `http-enrich url: only http and https are supported, got ${shape.protocol}`,
      );
    }
  }

  async runRows(rows: TaskRow[], ctx: TaskContext): Promise<ResultRow[]> {
    if (this.#closed) throw new Error("http-enrich runner is closed");
    const { signal, dispose } = childSignal(ctx.signal);
    const rowCtx = { ...ctx, signal };
    const aborts = new RequestAborts(signal, this.#options.timeoutMs);
    // Counted among the operation's workers (the budget's divisor, the status) while rows run.
    const release = this.#share.hold();
    try {
      // At most `concurrency` rows wait on the limiter at a time, not the whole shard: each
      // waiter holds an abort listener on the shard's signal, and with tens of thousands of
      // them adding and removing listeners grew quadratic (20,000 rows ran 30 times slower
      // than 5,000 rows did per row).
      const results: ResultRow[] = new Array(rows.length);
      let next = 0;
      let failed = false;
      const lane = async () => {
        while (!failed && next < rows.length) {
          const k = next++;
          const row = rows[k]!;
          // Held across the row's retries: the per-worker cap, whatever the shards running.
          if (!this.#limiter.tryAcquire()) await this.#limiter.acquire(signal);
          try {
            const result = await this.#row(row, rowCtx, aborts);
            ctx.onRowDone?.(1);
            ctx.onResults?.([result]);
            results[k] = result;
          } finally {
            this.#limiter.release();
          }
        }
      };
      const lanes = Math.min(this.#options.concurrency, rows.length);
      await Promise.all(
        Array.from({ length: lanes }, () =>
          lane().catch((err: unknown) => {
            failed = true;
            throw err;
          }),
        ),
      );
      return results;
    } finally {
      release();
      dispose();
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#share.close();
    const stacks = [...this.#connections.values()];
    this.#connections.clear();
    await Promise.all(stacks.map((p) => p.close()));
  }

  /**
   * The origin's connections; every one opens through the egress check (one connector per
   * origin, so concurrent lookups of its name share one resolver call).
   */
  #connectionsTo(origin: string): ConnectionStack {
    let stack = this.#connections.get(origin);
    if (!stack) {
      stack = new ConnectionStack(origin, {
        headersTimeout: this.#options.timeoutMs,
        bodyTimeout: this.#options.timeoutMs,
        connect: guardedConnector(this.#egress, this.#lookup ? { lookup: this.#lookup } : {}, {
          timeoutMs: this.#options.timeoutMs,
        }),
      });
      this.#connections.set(origin, stack);
    }
    return stack;
  }

  async #row(row: TaskRow, ctx: TaskContext, aborts: RequestAborts): Promise<ResultRow> {
    let url: URL;
    try {
      url = new URL(render(this.#url, row.values, encodeURIComponent));
    } catch {
      return { i: row.index, e: "http-enrich: the row's values do not make a valid URL" };
    }
    const body = this.#body && render(this.#body, row.values, this.#bodyEscape);
    // Worked out once per row, not per attempt: the origin is a getter that builds a string.
    const target: Target = { origin: url.origin, path: `${url.pathname}${url.search}` };
    const gate = this.#gate(target.origin);
    const attempts = this.#options.retries + 1;
    for (let attempt = 0; ; attempt++) {
      // Each attempt inside the origin's adaptive limit, its answer feeding the limit. Written out
      // here rather than in an async method of its own: one promise and frame less per row.
      if (!gate.limiter.tryAcquire()) await gate.limiter.acquire(ctx.signal);
      let outcome: AttemptOutcome;
      try {
        if (gate.bucket) await gate.bucket.take(ctx.signal);
        const sent = {
          epoch: gate.aimd.epoch,
          inFlight: gate.limiter.active,
          at: this.#clock.now(),
        };
        const connections = this.#connectionsTo(target.origin);
        const connection = connections.take();
        const request = aborts.open();
        try {
          outcome = await this.#exchange(row.index, target, body, ctx.signal, request, connection);
        } finally {
          aborts.close(request);
          connections.give(connection);
        }
        this.#observe(gate, target.origin, sent, outcome, ctx.logger);
      } finally {
        gate.limiter.release();
      }
      if (outcome.ok) return outcome.row;
      if (!outcome.retry) return { i: row.index, e: outcome.problem };
      if (attempt + 1 >= attempts) {
        return { i: row.index, e: `${outcome.problem} after ${attempts} attempts` };
      }
      const delay = this.#delay(attempt, outcome.retryAfterMs);
      ctx.logger.debug(
        { row: row.index, attempt: attempt + 1, problem: outcome.problem, delayMs: delay },
        "http-enrich retrying",
      );
      await this.#clock.sleep(delay, ctx.signal);
    }
  }

  /** Retry-After when the server gave one (capped), otherwise full jitter. */
  #delay(attempt: number, retryAfterMs: number | undefined): number {
    if (retryAfterMs !== undefined) return Math.min(retryAfterMs, this.#maxRetryAfterMs);
    const ceiling = Math.min(this.#maxBackoffMs, this.#options.backoffMs * 2 ** attempt);
    return Math.floor(this.#random() * ceiling);
  }

  /** Per-origin adaptive concurrency and stats, for progress and status. */
  stats(): OriginCounters[] {
    return [...this.#gates.entries()].map(([origin, gate]) => ({
      origin,
      concurrency: gate.limiter.limit,
      inFlight: gate.limiter.active,
      requests: gate.aimd.totals.requests,
      latencyMsTotal: gate.latencyMsTotal,
      throttled: gate.aimd.totals.throttled,
      failed: gate.aimd.totals.failed,
      ...(this.#options.rateLimit
        ? {
            budgetShare: this.#shareOf().perSecond,
            budget: this.#options.rateLimit.requestsPerSecond,
          }
        : {}),
    }));
  }

  /** This worker's share of one origin's budget now: the budget ÷ the workers sharing it. */
  #shareOf(): { perSecond: number; burst: number } {
    const limit = this.#options.rateLimit;
    const workers = this.#share.divisor();
    if (!limit || workers === 0) return { perSecond: 0, burst: 1 };
    return { perSecond: limit.requestsPerSecond / workers, burst: burstOf(limit) / workers };
  }

  #gate(origin: string): OriginGate {
    let gate = this.#gates.get(origin);
    if (!gate) {
      const aimd = this.#options.adaptiveConcurrency
        ? initialAimd({ max: this.#options.concurrency })
        : initialAimd({ max: this.#options.concurrency, initial: this.#options.concurrency });
      gate = {
        limiter: new Limiter(aimd.limit),
        aimd,
        bucket: this.#options.rateLimit
          ? new TokenBucket(this.#clock, { rate: () => this.#shareOf() })
          : undefined,
        latencyMsTotal: 0,
      };
      this.#gates.set(origin, gate);
    }
    return gate;
  }

  /** An answered attempt feeds its origin's adaptive limit (and the latency the stats report). */
  #observe(
    gate: OriginGate,
    origin: string,
    sent: { epoch: number; inFlight: number; at: number },
    outcome: AttemptOutcome,
    logger: Logger,
  ): void {
    const latencyMs = this.#clock.now() - sent.at;
    gate.latencyMsTotal += latencyMs;
    gate.aimd = observe(
      gate.aimd,
      { signal: signalOf(outcome), latencyMs, inFlight: sent.inFlight, epoch: sent.epoch },
      this.#aimdOptions,
    );
    if (this.#options.adaptiveConcurrency && gate.aimd.limit !== gate.limiter.limit) {
      logger.debug(
        { origin, from: gate.limiter.limit, to: gate.aimd.limit },
        "http-enrich concurrency changed",
      );
      gate.limiter.setLimit(gate.aimd.limit);
    }
  }

  /**
   * One request and its answer on `connection` (which the caller gives back once this settles:
   * the answer is read or dumped by then); `request` ends it on the shard's abort or the timeout.
   */
  async #exchange(
    index: number,
    target: Target,
    body: string | undefined,
    shardSignal: AbortSignal,
    request: RequestAbort,
    connection: Dispatcher,
  ): Promise<AttemptOutcome> {
    let res: Dispatcher.ResponseData;
    try {
      res = await connection.request({
        path: target.path,
        method: this.#options.method,
        headers: this.#headersFor(index),
        body: body ?? null,
        signal: request,
      });
    } catch (err) {
      shardSignal.throwIfAborted();
      // The policy will refuse the same address again: say why, at once.
      if (err instanceof EgressRefusedError)
        return { ok: false, retry: false, problem: err.message };
      return {
        ok: false,
        retry: true,
        problem: this.#networkProblem(err, timedOut(request, shardSignal)),
      };
    }

    const { statusCode } = res;
    try {
      if (statusCode >= 200 && statusCode < 300) {
        const text = await readBody(res, MAX_RESPONSE_BYTES);
        if (text === undefined) {
          return {
            ok: false,
            retry: false,
            problem: `HTTP ${statusCode}: response body over ${MAX_RESPONSE_BYTES} bytes`,
          };
        }
        let json: unknown = {};
        if (text.trim() !== "") {
          try {
            json = JSON.parse(text);
          } catch {
            return {
              ok: false,
              retry: false,
              problem: oneLine(`HTTP ${statusCode}: response is not JSON: ${text}`, 200),
            };
          }
        }
        const r: Record<string, EncodedCell> = {};
        for (const [column, steps] of this.#results) {
          const cell = toCell(readSteps(json, steps));
          // Never cut a value short in silence: a cell that cannot hold it fails the row.
          if (typeof cell === "string" && cell.length > MAX_CELL_CHARS) {
            return {
              ok: false,
              retry: false,
              problem: `result ${column}: ${cell.length} characters, over the ${MAX_CELL_CHARS} a cell holds`,
            };
          }
          r[column] = cell;
        }
        return { ok: true, row: { i: index, r } };
      }
      if (statusCode === 404 && this.#options.notFoundIsEmpty) {
        await res.body.dump();
        return { ok: true, row: { i: index, r: this.#emptyResult() } };
      }
      if (statusCode === 429 || statusCode >= 500) {
        await res.body.dump();
        const retryAfterMs = parseRetryAfter(res.headers["retry-after"], this.#clock.now());
        return {
          ok: false,
          retry: true,
          problem: `HTTP ${statusCode}`,
          throttled: statusCode === 429,
          ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
        };
      }
      // Any other status (4xx, or a redirect undici does not follow) will not improve on retry.
      const snippet = ((await readBounded(res.body, 4096)) ?? "").slice(0, 200);
      return {
        ok: false,
        retry: false,
        problem: oneLine(snippet ? `HTTP ${statusCode}: ${snippet}` : `HTTP ${statusCode}`, 300),
      };
    } catch (err) {
      // The body broke off mid-way: as retryable as a failed connection.
      await res.body.dump().catch(() => {});
      shardSignal.throwIfAborted();
      return {
        ok: false,
        retry: true,
        problem: this.#networkProblem(err, timedOut(request, shardSignal)),
      };
    }
  }

  /** The configured headers, plus the row's idempotency key (the same on every retry). */
  #headersFor(index: number): Record<string, string> {
    if (this.#idempotencyHeader === undefined || this.#operationId === undefined) {
      return this.#options.headers;
    }
    return { ...this.#options.headers, [this.#idempotencyHeader]: `${this.#operationId}:${index}` };
  }

  #networkProblem(err: unknown, timedOut: boolean): string {
    if (timedOut) return `timeout after ${this.#options.timeoutMs} ms`;
    const code = (err as { code?: unknown }).code;
    const text = describeError(err);
    return oneLine(
      typeof code === "string" && !text.includes(code) ? `${code}: ${text}` : text,
      200,
    );
  }

  #emptyResult(): Record<string, EncodedCell> {
    return Object.fromEntries(this.columns.map((c) => [c, null]));
  }
}

/** Where a row's requests go: its URL's origin, and the path with the query. */
interface Target {
  origin: string;
  path: string;
}

/** Whether the request's own timeout (not the shard) stopped it. */
function timedOut(request: RequestAbort, shardSignal: AbortSignal): boolean {
  return request.timedOut && !shardSignal.aborted;
}

/** How an attempt ended, for the adaptive limit: a 429, an overload sign, or an answer. */
function signalOf(outcome: AttemptOutcome): AimdSignal {
  if (outcome.ok || !outcome.retry) return "ok";
  return outcome.throttled ? "throttled" : "failed";
}

/** Creates the runner; throws BadInputError when the templates name unknown columns. */
export function createHttpEnrichRunner(
  deps: HttpEnrichDeps,
  options: HttpEnrichOptions,
  runnerOptions?: HttpEnrichRunnerOptions,
): HttpEnrichRunner {
  const runner = new HttpEnrichRunner(deps, options, runnerOptions);
  deps.logger.debug(
    { url: options.url, concurrency: options.concurrency, columns: runner.columns },
    "http-enrich runner ready",
  );
  return runner;
}
