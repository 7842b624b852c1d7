/**
 * Spot batches: spot capacity is requested in batches of five or six instances. Pure integer
 * arithmetic with no dependency on the rest of the policy; launch planning calls `spotBatches`.
 */

/** Smallest spot batch. */
const BATCH_MIN = 5;
/** Largest spot batch. */
const BATCH_MAX = 6;

/** Whether `n` is a sum of fives and sixes (5, 6, 10–12, 15–18 and every n ≥ 20). */
export function isBatchTotal(n: number): boolean {
  return n >= BATCH_MIN && n - BATCH_MIN * Math.ceil(n / BATCH_MAX) >= 0;
}

/** The smallest total ≥ n made of fives and sixes: 1–5 → 5, 7–9 → 10, 13–14 → 15, 19 → 20. */
export function roundUpToBatchTotal(n: number): number {
  let t = Math.max(n, BATCH_MIN);
  while (!isBatchTotal(t)) t++;
  return t;
}

/**
 * Splits a total into as few batches as possible, sixes first: 17 → 6+6+5, 12 → 6+6,
 * 11 → 6+5, 10 → 5+5. When the total is not a sum of fives and sixes (only when a cap forced
 * it), the largest such part is split that way and the rest is one smaller final batch:
 * 8 → 6+2, 13 → 6+6+1, 3 → 3.
 */
export function splitIntoBatches(total: number): number[] {
  let whole = total;
  while (whole > 0 && !isBatchTotal(whole)) whole--;
  const out: number[] = [];
  if (whole > 0) {
    const batches = Math.ceil(whole / BATCH_MAX);
    const sixes = whole - BATCH_MIN * batches;
    for (let i = 0; i < batches; i++) out.push(i < sixes ? BATCH_MAX : BATCH_MIN);
  }
  if (total > whole) out.push(total - whole);
  return out;
}

/**
 * The spot batches for `wanted` more instances when the caps leave room for `cap`.
 *
 * The rule: spot is requested in batches of five or six. `wanted` is rounded UP to the next
 * sum of fives and sixes (7, 8, 9 → 10 = 5+5; 13, 14 → 15 = 5+5+5; 19 → 20; 1–4 → 5) when the
 * caps allow it — the extra instances pick up work as soon as shards free up, and idle ones are
 * scaled in. When the caps do not allow the rounded total, we ask for `min(wanted, cap)`: batches
 * of five or six plus ONE smaller final batch (cap 8 for 7 wanted → 6+1; 3 allowed → 3).
 */
export function spotBatches(wanted: number, cap: number): number[] {
  if (wanted <= 0 || cap <= 0) return [];
  const rounded = roundUpToBatchTotal(wanted);
  return splitIntoBatches(rounded <= cap ? rounded : Math.min(wanted, cap));
}
