/**
 * Abort handles for one batch's HTTP requests: each request ends on its own timeout or on the
 * shard's signal. A handle is a plain EventEmitter with `aborted` and `reason`, which undici
 * takes as a request's `signal`; the batch listens on the shard's signal once for all of them.
 * An AbortController per request plus a listener on the shard's signal per request (EventTarget
 * bookkeeping in Node's internals) cost about a fifth of the runner's CPU per row.
 *
 * Timeouts: every request of a batch has the same timeout, so the open set (insertion-ordered)
 * is also in deadline order; one timer for the whole batch, armed for the oldest open request,
 * replaces a timer per request (whose objects outlived the young generation at 200 in flight).
 */
import { EventEmitter } from "node:events";

/** One request's abort handle: `signal` for undici, ended by `abort`. */
export class RequestAbort extends EventEmitter {
  aborted = false;
  reason: unknown = undefined;
  /** True when the request's own timeout ended it (not the shard). */
  timedOut = false;

  constructor(
    /** `performance.now()` at which the request times out. */
    readonly deadline: number,
  ) {
    super();
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.emit("abort");
  }
}

export class RequestAborts {
  readonly #open = new Set<RequestAbort>();
  readonly #shard: AbortSignal;
  readonly #timeoutMs: number;
  #timer: NodeJS.Timeout | undefined;

  /** `shard` ends every open request (listened on once, here); each request also ends after `timeoutMs`. */
  constructor(shard: AbortSignal, timeoutMs: number) {
    this.#shard = shard;
    this.#timeoutMs = timeoutMs;
    shard.addEventListener(
      "abort",
      () => {
        for (const request of this.#open) request.abort(shard.reason);
      },
      { once: true },
    );
  }

  /**
   * Runs `fn` with a handle that aborts after the timeout (with a TimeoutError) or when the
   * shard's signal does, whichever comes first.
   */
  async run<T>(fn: (handle: RequestAbort) => Promise<T>): Promise<T> {
    const handle = this.open();
    try {
      return await fn(handle);
    } finally {
      this.close(handle);
    }
  }

  /** `run` by hand, for the hot path (no closure): a handle, to `close` once the request is over. */
  open(): RequestAbort {
    const handle = new RequestAbort(performance.now() + this.#timeoutMs);
    if (this.#shard.aborted) handle.abort(this.#shard.reason);
    this.#open.add(handle);
    // Unref'd: an open request's timer alone never keeps the process alive.
    this.#timer ??= setTimeout(() => this.#expire(), this.#timeoutMs).unref();
    return handle;
  }

  close(handle: RequestAbort): void {
    this.#open.delete(handle);
    if (this.#open.size === 0) this.#disarm();
  }

  /** Times out every open request past its deadline; re-arms for the oldest one left. */
  #expire(): void {
    this.#timer = undefined;
    const now = performance.now();
    for (const request of this.#open) {
      if (request.deadline > now) {
        this.#timer = setTimeout(() => this.#expire(), Math.ceil(request.deadline - now)).unref();
        return;
      }
      this.#open.delete(request);
      request.timedOut = !request.aborted;
      request.abort(new DOMException("request timed out", "TimeoutError"));
    }
  }

  #disarm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
