/**
 * Adaptive concurrency for one origin: AIMD (additive increase, multiplicative decrease), as
 * TCP finds a link's capacity. A pure policy: `observe` takes the state and one finished request
 * and returns the next state; the runner owns the state and the semaphore it sizes.
 *
 * - Requests are judged in windows of `max(minWindow, limit)` completions (about one round trip
 *   of the whole limit), and the limit changes at most once a window.
 * - A 429 (the source says "too many"), or more 503s, timeouts and broken connections in a
 *   window than `errorTolerance` of its size, is an overload: the limit is multiplied by
 *   `backoff` at once and a new window starts. A source that answers a few 503s at random is
 *   not mistaken for a full one.
 * - A clean window whose mean latency stays within `latencyTolerance` × the baseline (the best
 *   recent mean), and which used at least half the limit, raises it: doubled while no overload
 *   has been seen yet (slow start), by one afterwards. Never above `max` (the `concurrency` option).
 * - Requests sent before a decrease answer after it; they count in the window but cannot cause a
 *   second decrease (an epoch, bumped at each decrease, tells them apart).
 */

export interface AimdOptions {
  /** Upper bound: the task's `concurrency`. */
  max: number;
  /** Where the limit starts. @default min(max, 8) */
  initial?: number;
  /** @default 1 */
  min?: number;
  /** Factor applied on overload. @default 0.7 */
  backoff?: number;
  /** Share of a window's completions that may be 503s, timeouts or network errors. @default 0.1 */
  errorTolerance?: number;
  /** A window mean latency above this × the baseline holds the limit. @default 2 */
  latencyTolerance?: number;
  /** Fewest completions in a window. @default 20 */
  minWindow?: number;
}

/** How a request ended, as the controller sees it. */
export type AimdSignal =
  /** Answered (2xx, 404, any other 4xx but 429). */
  | "ok"
  /** 429: the source's own limit. */
  | "throttled"
  /** 5xx, a timeout or a broken connection: overload when there are many. */
  | "failed";

export interface AimdSample {
  signal: AimdSignal;
  latencyMs: number;
  /** Requests in flight when this one started, itself included. */
  inFlight: number;
  /** `state.epoch` when the request started. */
  epoch: number;
}

export interface AimdState {
  readonly limit: number;
  /** Bumped at each decrease. */
  readonly epoch: number;
  /** True until the first overload: increases double the limit. */
  readonly slowStart: boolean;
  /** The best recent window mean latency (drifts up slowly so a source that got slower is followed). */
  readonly baselineMs: number | undefined;
  readonly window: {
    completions: number;
    throttled: number;
    failed: number;
    latencyMs: number;
    maxInFlight: number;
  };
  /** Totals since the start, for visibility. */
  readonly totals: { requests: number; throttled: number; failed: number; decreases: number };
}

interface Settings {
  max: number;
  min: number;
  backoff: number;
  errorTolerance: number;
  latencyTolerance: number;
  minWindow: number;
}

const EMPTY_WINDOW = { completions: 0, throttled: 0, failed: 0, latencyMs: 0, maxInFlight: 0 };

export function aimdSettings(options: AimdOptions): Settings & { initial: number } {
  const max = Math.max(1, Math.floor(options.max));
  const min = Math.min(max, Math.max(1, options.min ?? 1));
  return {
    max,
    min,
    initial: Math.min(max, Math.max(min, options.initial ?? 8)),
    backoff: options.backoff ?? 0.7,
    errorTolerance: options.errorTolerance ?? 0.1,
    latencyTolerance: options.latencyTolerance ?? 2,
    minWindow: options.minWindow ?? 20,
  };
}

export function initialAimd(options: AimdOptions): AimdState {
  const { initial } = aimdSettings(options);
  return {
    limit: initial,
    epoch: 0,
    slowStart: true,
    baselineMs: undefined,
    window: EMPTY_WINDOW,
    totals: { requests: 0, throttled: 0, failed: 0, decreases: 0 },
  };
}

/** Settings per options object: `observe` runs once per request, the options rarely change. */
const settingsOf = new WeakMap<AimdOptions, Settings>();

/**
 * The state after one more finished request. Runs once per request at thousands a second, so
 * the objects are built field by field (object spread here cost about a microsecond a call).
 */
export function observe(state: AimdState, sample: AimdSample, options: AimdOptions): AimdState {
  let s = settingsOf.get(options);
  if (!s) {
    s = aimdSettings(options);
    settingsOf.set(options, s);
  }
  const throttled = sample.signal === "throttled" ? 1 : 0;
  const failed = sample.signal === "failed" ? 1 : 0;
  // Answers to requests sent under an older, higher limit say nothing about the current one.
  const current = sample.epoch === state.epoch;
  const w = state.window;
  const window = {
    completions: w.completions + 1,
    throttled: w.throttled + (current ? throttled : 0),
    failed: w.failed + (current ? failed : 0),
    latencyMs: w.latencyMs + sample.latencyMs,
    maxInFlight: Math.max(w.maxInFlight, sample.inFlight),
  };
  const t = state.totals;
  const totals = {
    requests: t.requests + 1,
    throttled: t.throttled + throttled,
    failed: t.failed + failed,
    decreases: t.decreases,
  };
  const size = Math.max(s.minWindow, state.limit);
  // An overload is acted on at once (the window's other answers cannot undo it), once per epoch.
  const overloaded = window.throttled > 0 || window.failed > s.errorTolerance * size;
  if (overloaded) {
    totals.decreases++;
    return next(
      Math.max(s.min, Math.floor(state.limit * s.backoff)),
      state.epoch + 1,
      false,
      state.baselineMs,
      EMPTY_WINDOW,
      totals,
    );
  }
  if (window.completions < size) {
    return next(state.limit, state.epoch, state.slowStart, state.baselineMs, window, totals);
  }

  const meanMs = window.latencyMs / window.completions;
  const baselineMs =
    state.baselineMs === undefined
      ? meanMs
      : Math.min(meanMs, state.baselineMs + 0.05 * (meanMs - state.baselineMs));
  const slower = state.baselineMs !== undefined && meanMs > s.latencyTolerance * state.baselineMs;
  // A limit the work never came near says nothing about the source: keep it.
  const used = window.maxInFlight * 2 >= state.limit;
  const raised = state.slowStart ? state.limit * 2 : state.limit + 1;
  const limit = slower || !used ? state.limit : Math.min(s.max, raised);
  return next(limit, state.epoch, state.slowStart, baselineMs, EMPTY_WINDOW, totals);
}

/** A state built in one shape (so `observe`'s callers stay monomorphic). */
function next(
  limit: number,
  epoch: number,
  slowStart: boolean,
  baselineMs: number | undefined,
  window: AimdState["window"],
  totals: AimdState["totals"],
): AimdState {
  return { limit, epoch, slowStart, baselineMs, window, totals };
}
