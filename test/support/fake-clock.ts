/**
 * The one fake clock of every test tier. Time moves only through `advance`; every sleep is
 * recorded in `sleeps`. What a sleep does is the test's choice:
 *
 * - `sleeps: "wait"` (the default): a sleep resolves when `advance` reaches its due time, in due
 *   order, letting the code it wakes run (and sleep again) before time moves on — for loops
 *   driven step by step (heartbeats, watchers).
 * - `sleeps: "instant"`: a sleep resolves at once, without moving time — for code whose waits
 *   are not what the test is about (backoff between retries, fleet passes driven by hand).
 */
import type { Clock } from "../../src/shared/clock.ts";

interface Sleeper {
  at: number;
  seq: number;
  resolve: () => void;
}

export interface FakeClockOptions {
  /** Epoch ms at start. @default 2030-01-01T00:00:00Z */
  start?: number;
  /** What a sleep does (see the module comment). @default "wait" */
  sleeps?: "wait" | "instant";
}

/** Lets pending promise callbacks and I/O callbacks run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

export class FakeClock implements Clock {
  /** Every sleep asked for, in ms, in call order. */
  readonly sleeps: number[] = [];
  #now: number;
  #seq = 0;
  readonly #instant: boolean;
  readonly #sleepers = new Set<Sleeper>();

  constructor(options: FakeClockOptions = {}) {
    this.#now = options.start ?? Date.parse("2030-01-01T00:00:00Z");
    this.#instant = options.sleeps === "instant";
  }

  now(): number {
    return this.#now;
  }

  /** Sleeps waiting right now. */
  get pending(): number {
    return this.#sleepers.size;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      this.sleeps.push(ms);
      if (this.#instant) {
        resolve();
        return;
      }
      const sleeper: Sleeper = {
        at: this.#now + Math.max(0, ms),
        seq: this.#seq++,
        resolve: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        this.#sleepers.delete(sleeper);
        reject(signal?.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#sleepers.add(sleeper);
    });
  }

  /** Moves time forward by `ms`, waking each sleep at its due time. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    await settle();
    for (;;) {
      const next = [...this.#sleepers]
        .filter((s) => s.at <= target)
        .sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!next) break;
      this.#sleepers.delete(next);
      this.#now = Math.max(this.#now, next.at);
      next.resolve();
      await settle();
    }
    this.#now = target;
    await settle();
  }
}
