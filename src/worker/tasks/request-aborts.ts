/**
 * Abort handles for one batch's HTTP requests: each request ends on its own timeout or on the
 * shard's signal. A handle is a plain EventEmitter with `aborted` and `reason`, which undici
 * takes as a request's `signal`; the batch listens on the shard's signal once for all of them.
 * An AbortController per request plus a listener on the shard's signal per request (EventTarget
 * bookkeeping in Node's internals) cost about a fifth of the runner's CPU per row.
 */
import { EventEmitter } from "node:events";

/** One request's abort handle: `signal` for undici, ended by `abort`. */
export class RequestAbort extends EventEmitter {
  aborted = false;
  reason: unknown = undefined;
  /** True when the request's own timeout ended it (not the shard). */
  timedOut = false;

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

  /** `shard` ends every open request; it is listened on once, here. */
  constructor(shard: AbortSignal) {
    this.#shard = shard;
    shard.addEventListener(
      "abort",
      () => {
        for (const request of this.#open) request.abort(shard.reason);
      },
      { once: true },
    );
  }

  /**
   * Runs `fn` with a handle that aborts after `timeoutMs` (with a TimeoutError) or when the
   * shard's signal does, whichever comes first.
   */
  async run<T>(timeoutMs: number, fn: (handle: RequestAbort) => Promise<T>): Promise<T> {
    const handle = new RequestAbort();
    if (this.#shard.aborted) handle.abort(this.#shard.reason);
    const timer = setTimeout(() => {
      handle.timedOut = !handle.aborted;
      handle.abort(new DOMException("request timed out", "TimeoutError"));
    }, timeoutMs);
    this.#open.add(handle);
    try {
      return await fn(handle);
    } finally {
      clearTimeout(timer);
      this.#open.delete(handle);
    }
  }
}
