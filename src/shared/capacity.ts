/**
 * The capacity port: how the scheduler asks for instances, gives them back and looks at them.
 * The fleet policy decides (pure); the fleet manager carries its decisions out through this
 * port. Two adapters implement it: EC2 (CreateFleet) and the local stack (worker child
 * processes marked spot or on-demand).
 */
import { randomUUID } from "node:crypto";
import { type ErrorOptions, ShardfleetError } from "./errors.ts";

export const markets = ["spot", "on-demand"] as const;
/** How an instance is bought: spot (cheap, reclaimable) or on-demand. */
export type Market = (typeof markets)[number];

export const instanceRoles = ["worker", "straggler"] as const;
/** What an instance is for: regular work, or finishing stragglers (on-demand, polls the straggler queue first). */
export type InstanceRole = (typeof instanceRoles)[number];

/** One place capacity comes from: an instance type, optionally pinned to a subnet / AZ. */
export interface Pool {
  /** e.g. "c7g.large". */
  instanceType: string;
  /** The subnet to launch in (on EC2 it decides the AZ). Absent: the launch template's. */
  subnetId?: string;
  /** The availability zone, when known (informational on EC2; the subnet decides). */
  availabilityZone?: string;
}

/** A stable key for a pool (type + subnet + AZ), to compare pools across requests and results. */
export function poolKey(pool: Pool): string {
  return `${pool.instanceType}/${pool.subnetId ?? "-"}/${pool.availabilityZone ?? "-"}`;
}

/** A pool for people: "c7g.large in subnet-1 (eu-west-1a)". */
export function poolLabel(pool: Pool): string {
  const where = [pool.subnetId, pool.availabilityZone && `(${pool.availabilityZone})`]
    .filter(Boolean)
    .join(" ");
  return where ? `${pool.instanceType} in ${where}` : pool.instanceType;
}

/** One request for capacity. Build a new one (with a fresh token) per new request. */
export interface LaunchRequest {
  market: Market;
  /** Instances wanted. The provider may launch fewer (partial fulfilment), never more. */
  count: number;
  /** The pools this ONE request may draw from, in preference order. Never empty. */
  pools: Pool[];
  /** Tags for every launched instance (and for the request, where the provider keeps one). See `fleetTags`. */
  tags: Record<string, string>;
  /**
   * Idempotency token (≤ 64 ASCII characters): fresh (`newClientToken()`) for every NEW request,
   * and the SAME on every retry of that request — so a retried call whose first attempt did
   * launch returns the same instances instead of launching again. The caller retries by passing
   * the same request object again.
   */
  clientToken: string;
}

/** An instance a launch request started. */
export interface LaunchedInstance {
  instanceId: string;
  market: Market;
  instanceType: string;
  availabilityZone?: string;
  subnetId?: string;
  /** When the launch returned (ms since the epoch). */
  launchedAt: number;
}

/**
 * Why (part of) a request could not be fulfilled.
 * - `capacity`: no capacity in that pool now (move on, cool the pool, fall back to on-demand);
 * - `config`: the request itself is wrong (launch template, subnet, parameter): fix the setup;
 * - `permission`: the scheduler may not do this (IAM, opt-in): fix the role;
 * - `other`: anything else the provider reported.
 */
export const capacityErrorKinds = ["capacity", "config", "permission", "other"] as const;
export type CapacityErrorKind = (typeof capacityErrorKinds)[number];

export interface CapacityError {
  /** The pool that failed, one of the request's; absent when the error concerns the whole request. */
  pool?: Pool;
  /** The market the failed part was for, when the provider says. */
  market?: Market;
  /** The provider's code, e.g. "InsufficientInstanceCapacity". */
  code: string;
  message: string;
  kind: CapacityErrorKind;
}

/**
 * What one request produced. Both lists may be non-empty at once (partial fulfilment): the
 * instances in `launched` run and cost money even when `errors` is not empty — record them.
 */
export interface LaunchResult {
  launched: LaunchedInstance[];
  errors: CapacityError[];
  /** The provider's id for the request (EC2: the fleet id), for logs. */
  requestId?: string;
}

/** EC2's instance states; "stopping" is reported as "stopped". */
export const instanceStates = [
  "pending",
  "running",
  "shutting-down",
  "terminated",
  "stopped",
] as const;
export type InstanceState = (typeof instanceStates)[number];

/** An instance as the provider sees it now. */
export interface InstanceInfo {
  instanceId: string;
  market: Market;
  instanceType: string;
  availabilityZone?: string;
  state: InstanceState;
  /** ms since the epoch. */
  launchedAt: number;
  tags: Record<string, string>;
}

export interface InstanceFilter {
  /** Every one of these tags must match exactly. */
  tags: Record<string, string>;
}

/** The port. Every call takes an optional signal that aborts it. */
export interface CapacityProvider {
  /**
   * Asks for up to `request.count` instances in ONE request. Capacity shortfalls are not thrown:
   * they come back in `errors` next to whatever did launch. Throws `CapacityConfigError` when the
   * whole request was refused for a config or permission reason (fix the setup, do not retry),
   * and `RetryableError` on throttling, 5xx or network faults (retry the SAME request object, so
   * the same client token goes out).
   */
  launch(request: LaunchRequest, signal?: AbortSignal): Promise<LaunchResult>;
  /** Terminates the instances. Ids that are already gone are not an error; safe to repeat. */
  terminate(instanceIds: readonly string[], signal?: AbortSignal): Promise<void>;
  /**
   * The instances carrying all the given tags, in any state the provider still reports
   * (terminated ones linger on EC2 for about an hour). Used on start to find orphans and while
   * running to see instances the spot market reclaimed.
   */
  describe(filter: InstanceFilter, signal?: AbortSignal): Promise<InstanceInfo[]>;
}

/** A fresh idempotency token for a NEW launch request (36 characters). */
export function newClientToken(): string {
  return randomUUID();
}

/** The tag keys shardfleet puts on what it launches. */
export const FLEET_TAGS = {
  /** Which scheduler (fleet) owns the instance: orphan sweeps only look at their own fleet. */
  fleet: "shardfleet:fleet",
  /** The operation the instance was launched for (cost attribution, scale-in at its end). */
  operation: "shardfleet:operation",
  role: "shardfleet:role",
  market: "shardfleet:market",
} as const;

/** The tags of one launch. */
export function fleetTags(input: {
  fleet: string;
  operationId: string;
  role: InstanceRole;
  market: Market;
}): Record<string, string> {
  return {
    [FLEET_TAGS.fleet]: input.fleet,
    [FLEET_TAGS.operation]: input.operationId,
    [FLEET_TAGS.role]: input.role,
    [FLEET_TAGS.market]: input.market,
  };
}

/**
 * The provider refused a whole request for a configuration (`kind: "config"`: launch template,
 * subnet, parameter) or permission (`kind: "permission"`: IAM policy, account opt-in) reason.
 * Retrying cannot help. Fix: the message names the provider's code and what to check.
 */
export class CapacityConfigError extends ShardfleetError {
  readonly kind: "config" | "permission";
  /** The provider's error code, e.g. "UnauthorizedOperation". */
  readonly providerCode: string;

  constructor(
    kind: "config" | "permission",
    providerCode: string,
    message: string,
    options: ErrorOptions = {},
  ) {
    super("CONFIG_INVALID", message, {
      ...options,
      details: { kind, providerCode, ...options.details },
    });
    this.kind = kind;
    this.providerCode = providerCode;
  }
}
