/**
 * Test support for fleet tests: an in-memory stand-in for EC2 (a fake capacity provider: EC2's
 * fleet API has no local peer), its pools and prices; and the state the pure fleet policy plans
 * from (operations, instances, prices, memory), built one way for every policy test.
 */

import type { FleetPlan } from "../../src/scheduler/fleet/policy/types.ts";
import {
  emptyFleetMemory,
  type FleetDecision,
  type FleetInstance,
  type FleetPolicyOptions,
  type FleetState,
  type LaunchDecision,
  type OperationState,
  type PriceTable,
  planFleet,
} from "../../src/scheduler/fleet/policy.ts";
import type {
  CapacityProvider,
  InstanceFilter,
  InstanceInfo,
  LaunchRequest,
  LaunchResult,
  Market,
  Pool,
} from "../../src/shared/capacity.ts";
import type { Clock } from "../../src/shared/clock.ts";

/** Two pools of one type in two AZs, and their prices. */
export const POOLS = [
  { instanceType: "c7g.large", availabilityZone: "az-1" },
  { instanceType: "c7g.large", availabilityZone: "az-2" },
];
export const PRICES = { spot: { "c7g.large": 0.03 }, "on-demand": { "c7g.large": 0.1 } };

/**
 * EC2 in memory: instances launch in the request's first pool unless the market has no
 * capacity (`available`), and run until terminated or reclaimed.
 */
export class FakeCapacity implements CapacityProvider {
  readonly instances = new Map<string, InstanceInfo>();
  readonly launches: LaunchRequest[] = [];
  readonly terminations: string[][] = [];
  readonly available: Record<Market, boolean> = { spot: true, "on-demand": true };
  /** Thrown by the next launch calls, in order. */
  readonly throwNext: unknown[] = [];
  #n = 0;

  constructor(readonly clock: Clock) {}

  async launch(request: LaunchRequest): Promise<LaunchResult> {
    this.launches.push(request);
    if (this.throwNext.length > 0) throw this.throwNext.shift();
    if (!this.available[request.market]) {
      return noCapacity(request);
    }
    const pool = request.pools[0]!;
    const launched = Array.from({ length: request.count }, () => {
      const instanceId = `i-${++this.#n}`;
      const launchedAt = this.clock.now();
      this.instances.set(instanceId, {
        instanceId,
        market: request.market,
        instanceType: pool.instanceType,
        ...(pool.availabilityZone ? { availabilityZone: pool.availabilityZone } : {}),
        state: "running",
        launchedAt,
        tags: { ...request.tags },
      });
      return { instanceId, market: request.market, instanceType: pool.instanceType, launchedAt };
    });
    return { launched, errors: [] };
  }

  async terminate(ids: readonly string[]): Promise<void> {
    this.terminations.push([...ids]);
    for (const id of ids) {
      const i = this.instances.get(id);
      if (i) i.state = "terminated";
    }
  }

  async describe(filter: InstanceFilter): Promise<InstanceInfo[]> {
    return [...this.instances.values()]
      .filter((i) => Object.entries(filter.tags).every(([k, v]) => i.tags[k] === v))
      .map((i) => ({ ...i, tags: { ...i.tags } }));
  }

  /** A spot reclaim: the instance is simply gone. */
  reclaim(id: string): void {
    this.instances.get(id)!.state = "terminated";
  }

  live(): InstanceInfo[] {
    return [...this.instances.values()].filter((i) => i.state === "running");
  }
}

/** What EC2 answers a launch when none of its pools has capacity. */
export function noCapacity(request: LaunchRequest): LaunchResult {
  return {
    launched: [],
    errors: request.pools.map((pool) => ({
      pool,
      market: request.market,
      code: "InsufficientInstanceCapacity",
      message: "There is no capacity",
      kind: "capacity" as const,
    })),
  };
}

// ------------------------------------------------------------------------------------------
// The pure fleet policy's input

/** The fixed "now" the policy tests plan at. */
export const POLICY_NOW = 1_700_000_000_000;
/** One pool: one instance type in one subnet. */
const POLICY_POOLS: Pool[] = [{ instanceType: "c7g.large", subnetId: "subnet-a" }];
/** That type's spot and on-demand prices (USD per hour). */
const POLICY_PRICES: PriceTable = {
  spot: { "c7g.large": 0.03 },
  "on-demand": { "c7g.large": 0.0725 },
};

/** An operation with `pendingShards` queued, nothing running or committed yet. */
export function operationState(
  id: string,
  pendingShards: number,
  extra: Partial<OperationState> = {},
): OperationState {
  return { id, pendingShards, running: [], completedShardMs: [], ...extra };
}

/** A running spot worker of `op-1`, launched a minute before POLICY_NOW, busy with one shard. */
export function fleetInstance(id: string, extra: Partial<FleetInstance> = {}): FleetInstance {
  return {
    id,
    operationId: "op-1",
    role: "worker",
    market: "spot",
    instanceType: "c7g.large",
    state: "running",
    launchedAt: POLICY_NOW - 60_000,
    runningShards: 1,
    ...extra,
  };
}

/** No operations, no instances, POLICY_PRICES and an empty memory, unless `extra` says. */
export function fleetState(extra: Partial<FleetState> = {}): FleetState {
  return {
    operations: [],
    instances: [],
    prices: POLICY_PRICES,
    memory: emptyFleetMemory(),
    ...extra,
  };
}

/** planFleet at POLICY_NOW over fleetState(state), in POLICY_POOLS with a cap of 50 instances. */
export function planPolicy(
  state: Partial<FleetState>,
  options: Partial<FleetPolicyOptions> = {},
): FleetPlan {
  return planFleet(fleetState(state), POLICY_NOW, {
    pools: POLICY_POOLS,
    maxInstances: 50,
    ...options,
  });
}

/** The launch decisions of a plan. */
export function launchesOf(decisions: readonly FleetDecision[]): LaunchDecision[] {
  return decisions.filter((d): d is LaunchDecision => d.type === "launch");
}

/** How many instances the launch decisions `which` picks ask for (all of them by default). */
export function launchedCount(
  decisions: readonly FleetDecision[],
  which: (d: LaunchDecision) => boolean = () => true,
): number {
  return launchesOf(decisions)
    .filter(which)
    .reduce((sum, d) => sum + d.count, 0);
}
