/**
 * Carrying launch decisions out, the policy's side: the port request for a decision, the
 * instances a launch started as the scheduler tracks them, and how a launch's result (or thrown
 * error) folds back into `FleetMemory` — capacity errors cool pools, config and permission
 * errors mark the operation to fail. Pure: the loop calls these around the capacity port.
 */
import {
  CapacityConfigError,
  fleetTags,
  type LaunchedInstance,
  type LaunchRequest,
  type LaunchResult,
  poolLabel,
} from "../../../shared/capacity.ts";
import type { FleetInstance, FleetMemory, LaunchDecision, OperationMemory } from "./types.ts";

/** The port request for a launch decision. Pass a fresh token (`newClientToken()`); reuse the request on retry. */
export function toLaunchRequest(
  decision: LaunchDecision,
  input: { fleet: string; clientToken: string },
): LaunchRequest {
  return {
    market: decision.market,
    count: decision.count,
    pools: decision.pools,
    tags: fleetTags({
      fleet: input.fleet,
      operationId: decision.operationId,
      role: decision.role,
      market: decision.market,
    }),
    clientToken: input.clientToken,
  };
}

/** The instances a launch started, as the scheduler tracks them — including those launched despite errors. */
export function fleetInstancesFrom(
  decision: LaunchDecision,
  launched: readonly LaunchedInstance[],
): FleetInstance[] {
  return launched.map((i) => ({
    id: i.instanceId,
    operationId: decision.operationId,
    role: decision.role,
    market: i.market,
    instanceType: i.instanceType,
    state: "pending",
    launchedAt: i.launchedAt,
    runningShards: 0,
  }));
}

/**
 * Folds a launch result into memory: capacity (and unclassified) errors cool their pool — or
 * every pool of the request when the error names none; a config or permission error marks the
 * operation to fail loudly on the next plan.
 */
export function recordLaunchOutcome(
  memory: FleetMemory,
  decision: LaunchDecision,
  result: LaunchResult,
  now: number,
): FleetMemory {
  const poolFailures = [...memory.poolFailures];
  let fatal = memory.operations[decision.operationId]?.fatal;
  for (const e of result.errors) {
    if (e.kind === "config" || e.kind === "permission") {
      const where = e.pool ? ` in ${poolLabel(e.pool)}` : "";
      fatal ??= {
        kind: e.kind,
        code: e.code,
        message: fatalMessage(e.kind, `${e.code}${where}: ${e.message}`),
      };
      continue;
    }
    const market = e.market ?? decision.market;
    for (const pool of e.pool ? [e.pool] : decision.pools) {
      poolFailures.push({ market, pool, at: now, code: e.code, message: e.message });
    }
  }
  return withOperation({ ...memory, poolFailures }, decision.operationId, fatal);
}

/**
 * Folds a thrown launch into memory: a CapacityConfigError marks the operation to fail loudly.
 * Anything else changes nothing — the loop retries a RetryableError with the same request, and
 * the capacity deadline bounds every other failure.
 */
export function recordLaunchError(
  memory: FleetMemory,
  decision: LaunchDecision,
  err: unknown,
): FleetMemory {
  if (!(err instanceof CapacityConfigError)) return memory;
  if (memory.operations[decision.operationId]?.fatal) return memory;
  return withOperation(memory, decision.operationId, {
    kind: err.kind,
    code: err.providerCode,
    message: fatalMessage(err.kind, err.message),
  });
}

function withOperation(
  memory: FleetMemory,
  operationId: string,
  fatal: OperationMemory["fatal"],
): FleetMemory {
  if (!fatal) return memory;
  return {
    ...memory,
    operations: {
      ...memory.operations,
      [operationId]: { ...memory.operations[operationId], fatal },
    },
  };
}

function fatalMessage(kind: "config" | "permission", detail: string): string {
  const fix =
    kind === "permission"
      ? "give the scheduler's role the EC2 permissions it needs (CreateFleet, RunInstances, CreateTags, iam:PassRole)"
      : "fix the fleet's launch template, subnets or instance types";
  return `capacity request refused (${kind} error, retrying cannot help): ${detail} — ${fix}`;
}
