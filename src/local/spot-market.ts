/**
 * The simulated spot market of the local stack: it reclaims spot instances at a configurable
 * rate, half with a two-minute notice (scaled by a time factor so tests run fast) published on
 * the instance's metadata endpoint, half with SIGKILL and no notice at all.
 *
 * The decision is a pure function of the live instances, the elapsed time and a random source;
 * the driver only applies it.
 */
import type { Market } from "../shared/capacity.ts";
import type { Clock } from "../shared/clock.ts";
import type { Logger } from "../shared/logger.ts";

export interface MarketInstance {
  readonly name: string;
  readonly market: Market;
  /** True while the process runs and no reclaim has been decided for it. */
  readonly reclaimable: boolean;
}

export type ReclaimKind = "notice" | "kill";

export interface ReclaimDecision {
  name: string;
  kind: ReclaimKind;
}

export interface SpotMarketPolicy {
  /** Expected reclaims per spot instance per minute of simulated time. */
  reclaimsPerInstanceMinute: number;
  /** Share of reclaims that come with a notice. @default 0.5 */
  noticeShare?: number;
}

/**
 * Which spot instances are reclaimed in the next `elapsedMs`: each live spot instance
 * independently, with the probability of a Poisson event at the configured rate.
 */
export function planReclaims(
  instances: readonly MarketInstance[],
  elapsedMs: number,
  policy: SpotMarketPolicy,
  random: () => number,
): ReclaimDecision[] {
  const p = 1 - Math.exp(-(policy.reclaimsPerInstanceMinute * elapsedMs) / 60_000);
  const noticeShare = policy.noticeShare ?? 0.5;
  const out: ReclaimDecision[] = [];
  for (const instance of instances) {
    if (instance.market !== "spot" || !instance.reclaimable) continue;
    if (random() < p)
      out.push({ name: instance.name, kind: random() < noticeShare ? "notice" : "kill" });
  }
  return out;
}

export interface SpotMarketDeps {
  clock: Clock;
  logger: Logger;
  /** @default Math.random */
  random?: () => number;
  /** The instances right now. */
  instances(): readonly MarketInstance[];
  /** Carries a decision out (publish a notice and kill later, or kill now). */
  reclaim(decision: ReclaimDecision): void;
}

export interface SpotMarketOptions extends SpotMarketPolicy {
  /** How often the market decides. @default 250 */
  tickMs?: number;
}

/** Drives `planReclaims` on a timer. */
export class SpotMarket {
  readonly #deps: SpotMarketDeps;
  readonly #options: SpotMarketOptions;
  #timer: NodeJS.Timeout | undefined;
  #last = 0;
  readonly decisions: ReclaimDecision[] = [];

  constructor(deps: SpotMarketDeps, options: SpotMarketOptions) {
    this.#deps = deps;
    this.#options = options;
  }

  start(): void {
    this.#last = this.#deps.clock.now();
    this.#timer = setInterval(() => this.tick(), this.#options.tickMs ?? 250);
    this.#timer.unref();
  }

  tick(): void {
    const now = this.#deps.clock.now();
    const decisions = planReclaims(
      this.#deps.instances(),
      now - this.#last,
      this.#options,
      this.#deps.random ?? Math.random,
    );
    this.#last = now;
    for (const d of decisions) {
      this.#deps.logger.info(
        { instanceId: d.name, kind: d.kind },
        "spot market reclaims an instance",
      );
      this.decisions.push(d);
      this.#deps.reclaim(d);
    }
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
