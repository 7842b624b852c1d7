/**
 * Spot signals (EC2 interruption warnings and rebalance recommendations, from EventBridge) as
 * the policy sees them: marks on a `FleetInstance`. `withSpotSignal` sets a mark idempotently;
 * `servesCapacity` is how sizing, launches and scale-in read the interruption mark.
 */
import type { FleetInstance } from "./types.ts";

/** The spot signal marks of an instance. */
export type SpotMarks = Pick<FleetInstance, "interruptionWarnedAt" | "rebalanceRecommendedAt">;

/** A spot signal as the policy needs it (src/shared/schemas/spot-events.ts has the event). */
export interface SpotSignalMark {
  kind: "interruption-warning" | "rebalance-recommendation";
  /** When EC2 emitted it (ms). */
  at: number;
}

/**
 * Folds a spot signal into an instance's marks. The first signal of each kind wins, so a
 * duplicate (SQS delivers at least once; IMDS and EventBridge may both tell) changes nothing:
 * the same object comes back, which is how the caller tells a duplicate from news.
 */
export function withSpotSignal<T extends SpotMarks>(instance: T, signal: SpotSignalMark): T {
  const field =
    signal.kind === "interruption-warning" ? "interruptionWarnedAt" : "rebalanceRecommendedAt";
  if (instance[field] !== undefined) return instance;
  return { ...instance, [field]: signal.at };
}

/** Whether the instance counts as capacity for sizing (not warned of an interruption). */
export function servesCapacity(instance: Pick<FleetInstance, "interruptionWarnedAt">): boolean {
  return instance.interruptionWarnedAt === undefined;
}
