/**
 * Delivery with retries, as a value: each try says whether it worked, failed for good, or may
 * work later; the loop backs off (doubling, with jitter) and returns what happened.
 */
import type { Clock } from "../../shared/clock.ts";

export type TryOutcome =
  | { kind: "ok" }
  | { kind: "retry"; error: string; afterMs?: number }
  | { kind: "permanent"; error: string };

export type DeliveryOutcome =
  | { ok: true; attempts: number }
  | { ok: false; attempts: number; error: string };

export interface RetryOptions {
  /** Tries in all. @default 5 */
  attempts?: number;
  /** Pause before the second try, doubled each time (half to full, at random). @default 500 */
  firstDelayMs?: number;
  /** @default 8000 */
  maxDelayMs?: number;
}

export async function withRetries(
  deps: { clock: Clock; random?: () => number },
  attempt: (n: number) => Promise<TryOutcome>,
  options: RetryOptions = {},
  signal?: AbortSignal,
): Promise<DeliveryOutcome> {
  const attempts = options.attempts ?? 5;
  const first = options.firstDelayMs ?? 500;
  const max = options.maxDelayMs ?? 8_000;
  const random = deps.random ?? Math.random;
  let last = "not tried";
  for (let n = 1; n <= attempts; n++) {
    const outcome = await attempt(n);
    if (outcome.kind === "ok") return { ok: true, attempts: n };
    last = outcome.error;
    if (outcome.kind === "permanent") return { ok: false, attempts: n, error: last };
    if (n === attempts) break;
    const backoff = Math.min(max, first * 2 ** (n - 1));
    const delay = Math.min(max, Math.max(outcome.afterMs ?? 0, backoff * (0.5 + random() / 2)));
    await deps.clock.sleep(delay, signal);
  }
  return { ok: false, attempts, error: `${last} (gave up after ${attempts} attempts)` };
}
