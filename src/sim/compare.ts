/**
 * One `simulate` run: every variant in the same world from the same seed, their ratios to
 * all-on-demand, the goal figures and the quotas report. Pure (no I/O); the CLI and the
 * docs script print it.
 */
import { type SimResult, simulate } from "./engine.ts";
import { interruptionRate, parseSimParams, type SimParams, type SimParamsInput } from "./params.ts";
import { type QuotaCheck, quotaReport } from "./quotas.ts";
import { ALL_ON_DEMAND, standardVariants, type Variant } from "./variants.ts";

export interface PolicyFigures {
  description: string;
  finished: boolean;
  unfinished_reason?: string;
  cost_usd: number;
  makespan_s: number;
  cost_ratio_vs_on_demand: number;
  makespan_ratio_vs_on_demand: number;
  wasted_rows: number;
  wasted_usd: number;
  idle_usd: number;
  reclaims: number;
  reclaims_with_notice: number;
  fallback_instances: number;
  straggler_copies: number;
  instances_launched: number;
  create_fleet_calls: number;
  ramp_s: number;
  simulated_events: number;
  wall_ms: number;
}

export interface GoalCheck {
  text: string;
  value: number;
  met: boolean;
}

export interface Comparison {
  params: SimParams;
  interruptions: string;
  policies: Record<string, PolicyFigures>;
  goal: GoalCheck[];
  quotas: QuotaCheck[];
  results: SimResult[];
}

const round = (x: number, digits: number) => Number(x.toFixed(digits));

/** Runs the variants (all-on-demand is always run: the ratios need it). */
export function compare(
  input: SimParamsInput,
  variants: readonly Variant[] = standardVariants(),
  onDone?: (r: SimResult) => void,
): Comparison {
  const params = parseSimParams(input);
  const list = variants.some((v) => v.name === ALL_ON_DEMAND.name)
    ? variants
    : [...variants, ALL_ON_DEMAND];
  const results: SimResult[] = [];
  const wall: number[] = [];
  for (const v of list) {
    const t0 = performance.now();
    const r = simulate(params, v);
    wall.push(performance.now() - t0);
    results.push(r);
    onDone?.(r);
  }
  const od = results.find((r) => r.policy === ALL_ON_DEMAND.name)!;
  const policies: Record<string, PolicyFigures> = {};
  results.forEach((r, i) => {
    policies[r.policy] = {
      description: r.description,
      finished: r.finished,
      ...(r.unfinishedReason ? { unfinished_reason: r.unfinishedReason } : {}),
      cost_usd: round(r.costUsd, 4),
      makespan_s: round(r.makespanS, 1),
      cost_ratio_vs_on_demand: round(od.costUsd > 0 ? r.costUsd / od.costUsd : 0, 4),
      makespan_ratio_vs_on_demand: round(od.makespanS > 0 ? r.makespanS / od.makespanS : 0, 4),
      wasted_rows: r.wastedRows,
      wasted_usd: round(r.wastedUsd, 4),
      idle_usd: round(r.idleUsd, 4),
      reclaims: r.reclaims,
      reclaims_with_notice: r.reclaimsWithNotice,
      fallback_instances: r.fallbackInstances,
      straggler_copies: r.stragglerCopies,
      instances_launched: r.instancesLaunched,
      create_fleet_calls: r.createFleetCalls,
      ramp_s: round(r.rampS, 1),
      simulated_events: r.events,
      wall_ms: Math.round(wall[i]!),
    };
  });
  const sf = policies.shardfleet;
  const noCk = policies["spot-no-checkpoints"];
  const goal: GoalCheck[] = [];
  if (sf) {
    goal.push(
      {
        text: "shardfleet cost ≤ 0.40 × all-on-demand",
        value: sf.cost_ratio_vs_on_demand,
        met: sf.finished && sf.cost_ratio_vs_on_demand <= 0.4,
      },
      {
        text: "shardfleet makespan ≤ 1.10 × all-on-demand",
        value: sf.makespan_ratio_vs_on_demand,
        met: sf.finished && sf.makespan_ratio_vs_on_demand <= 1.1,
      },
    );
    if (noCk) {
      goal.push({
        text: "shardfleet cheaper than spot-no-checkpoints (this band)",
        value: round(noCk.cost_usd > 0 ? sf.cost_usd / noCk.cost_usd : 0, 4),
        met: sf.finished && sf.cost_usd < noCk.cost_usd,
      });
    }
  }
  const main = results.find((r) => r.policy === "shardfleet") ?? results[0]!;
  return {
    params,
    interruptions: interruptionRate(params).statement,
    policies,
    goal,
    quotas: quotaReport(main, params),
    results,
  };
}
