/**
 * The EC2 capacity adapter: the capacity port over EC2 Fleet.
 *
 * `launch` is one CreateFleet of type `instant` (synchronous: the answer lists the instances
 * that launched and an error per pool that did not), price-capacity-optimized for spot and
 * lowest-price for on-demand, with the launch template overridden by the request's pools
 * (instance type × subnet). Every error in the answer is classified — capacity errors come
 * back to the policy, config and permission errors are loud — and instances that launched next
 * to errors are returned too. `terminate` and `describe` are TerminateInstances (1000 ids a call,
 * the documented maximum) and paginated DescribeInstances with tag filters.
 */
import {
  type _InstanceType,
  CreateFleetCommand,
  type CreateFleetCommandInput,
  DescribeInstancesCommand,
  type DescribeInstancesCommandOutput,
  type EC2Client,
  type CreateFleetError as Ec2FleetError,
  type CreateFleetInstance as Ec2FleetInstance,
  type FleetLaunchTemplateOverrides,
  type Instance,
  type Tag,
  TerminateInstancesCommand,
} from "@aws-sdk/client-ec2";
import {
  awsErrorCode,
  bareAwsCode,
  classifyAwsError,
  isRetryableAwsError,
} from "../../shared/aws-errors.ts";
import {
  CapacityConfigError,
  type CapacityError,
  type CapacityErrorKind,
  type CapacityProvider,
  type InstanceFilter,
  type InstanceInfo,
  type InstanceState,
  type LaunchedInstance,
  type LaunchRequest,
  type LaunchResult,
  type Market,
  type Pool,
  poolLabel,
} from "../../shared/capacity.ts";
import type { Clock } from "../../shared/clock.ts";
import { ConfigError, RetryableError, ShardfleetError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";

/** TerminateInstances accepts up to 1000 instance ids a call (EC2 API reference). */
export const TERMINATE_MAX_IDS = 1000;
/** DescribeInstances page size (5–1000). */
const DESCRIBE_PAGE = 1000;

export interface Ec2CapacityDeps {
  ec2: EC2Client;
  logger: Logger;
  clock: Clock;
}

export interface Ec2CapacityOptions {
  /** The worker launch template: its id or its name (exactly one). */
  launchTemplate: {
    id?: string;
    name?: string;
    /** A version number, "$Latest" or "$Default". @default "$Default" */
    version?: string;
  };
  /** Instance types to draw from, in preference order. */
  instanceTypes: string[];
  /** Subnets (typically one per AZ), in preference order. Empty: the launch template's network. */
  subnets: { subnetId: string; availabilityZone?: string }[];
  /** Ids per TerminateInstances call. @default 1000 (the documented maximum) */
  terminateBatchSize?: number;
}

/** The pools of a configuration: every instance type in every subnet, type-major. */
export function ec2PoolsFrom(
  instanceTypes: readonly string[],
  subnets: Ec2CapacityOptions["subnets"],
): Pool[] {
  if (subnets.length === 0) return instanceTypes.map((instanceType) => ({ instanceType }));
  return instanceTypes.flatMap((instanceType) =>
    subnets.map((s) => ({
      instanceType,
      subnetId: s.subnetId,
      ...(s.availabilityZone ? { availabilityZone: s.availabilityZone } : {}),
    })),
  );
}

// ---------------------------------------------------------------------------------------------
// Error classification

/** No capacity for this request in this pool right now: try other pools, later, or on-demand. */
const CAPACITY_CODES = new Set([
  "InsufficientInstanceCapacity",
  "InsufficientCapacity",
  "InsufficientHostCapacity",
  "InsufficientReservedInstanceCapacity",
  "InsufficientCapacityOnOutpost",
  "InsufficientFreeAddressesInSubnet",
  "UnfulfillableCapacity",
  "MaxSpotInstanceCountExceeded",
  "MaxSpotFleetRequestCountExceeded",
  "SpotMaxPriceTooLow",
  // Account quotas: no capacity for us in that market, whatever the pool.
  "InstanceLimitExceeded",
  "VcpuLimitExceeded",
  // Spot request status codes, which fleet errors sometimes carry.
  "capacity-not-available",
  "capacity-oversubscribed",
  "price-too-low",
]);

/** The caller may not do this: fix the IAM policy or the account. */
const PERMISSION_CODES = new Set([
  "UnauthorizedOperation",
  "AuthFailure",
  "AccessDenied",
  "AccessDeniedException",
  "Blocked",
  "OptInRequired",
  "PendingVerification",
  "SignatureDoesNotMatch",
  "InvalidClientTokenId",
  "UnrecognizedClientException",
]);

/** Non-"Invalid…" codes that still mean the request is wrong. */
const CONFIG_CODES = new Set([
  "Unsupported",
  "UnsupportedOperation",
  "MissingParameter",
  "IdempotentParameterMismatch",
  "VPCIdNotSpecified",
  "VPCResourceNotSpecified",
  "InstanceCreditSpecification.NotSupported",
]);

/**
 * What an EC2 error code means for the fleet (see the port's `CapacityErrorKind`). Codes that
 * start with "Invalid" or "Missing" are config errors (a launch template, subnet, AMI, key pair,
 * security group or parameter that is wrong or gone).
 */
export function classifyEc2ErrorCode(code: string): CapacityErrorKind {
  const c = bareAwsCode(code);
  if (CAPACITY_CODES.has(c)) return "capacity";
  // "AuthFailure.ServiceLinkedRoleCreationNotPermitted": the account lacks the spot
  // service-linked role and the caller may not create it (docs/deploy.md creates it once).
  if (PERMISSION_CODES.has(c) || c.startsWith("AuthFailure.")) return "permission";
  if (CONFIG_CODES.has(c) || c.startsWith("Invalid") || c.startsWith("Missing")) return "config";
  return "other";
}

/** The thrown error's EC2 code, without a `Client.`/`Server.` prefix. */
function codeOf(err: unknown): string {
  return awsErrorCode(err) ?? "Unknown";
}

function isAbort(err: unknown, signal?: AbortSignal): boolean {
  return signal?.aborted === true || classifyAwsError(err) === "aborted";
}

const HINTS: Record<"config" | "permission", string> = {
  config: "check the fleet's launch template (id or name, version), subnets and instance types",
  permission:
    "the scheduler's role needs ec2:CreateFleet, ec2:RunInstances, ec2:CreateTags, ec2:TerminateInstances, ec2:DescribeInstances and iam:PassRole for the worker's instance profile",
};

/** A thrown SDK error as shardfleet's error (aborts pass through unchanged). */
function translate(err: unknown, action: string, signal?: AbortSignal): Error {
  if (isAbort(err, signal)) return err instanceof Error ? err : new Error(String(err));
  const code = codeOf(err);
  const message = (err instanceof Error && err.message) || code;
  const options = { cause: err, details: { awsCode: code, action } };
  if (isRetryableAwsError(err)) {
    return new RetryableError(`EC2 ${action} failed for now (${code}): ${message}`, options);
  }
  const kind = classifyEc2ErrorCode(code);
  if (kind === "config" || kind === "permission") {
    return new CapacityConfigError(
      kind,
      code,
      `EC2 ${action} refused (${code}): ${message} — ${HINTS[kind]}`,
      options,
    );
  }
  return new ShardfleetError("INTERNAL", `EC2 ${action} failed (${code}): ${message}`, options);
}

// ---------------------------------------------------------------------------------------------

export class Ec2Capacity implements CapacityProvider {
  /** The configured pools (instance types × subnets), in preference order. */
  readonly pools: readonly Pool[];
  readonly #ec2: EC2Client;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #template: { LaunchTemplateId?: string; LaunchTemplateName?: string; Version: string };
  readonly #terminateBatch: number;

  constructor(deps: Ec2CapacityDeps, options: Ec2CapacityOptions) {
    const { id, name, version } = options.launchTemplate;
    if ((id === undefined) === (name === undefined)) {
      throw new ConfigError(
        "EC2 fleet: give exactly one of launchTemplate.id and launchTemplate.name",
      );
    }
    if (options.instanceTypes.length === 0) {
      throw new ConfigError("EC2 fleet: instanceTypes is empty; name at least one instance type");
    }
    const batch = options.terminateBatchSize ?? TERMINATE_MAX_IDS;
    if (!Number.isInteger(batch) || batch < 1 || batch > TERMINATE_MAX_IDS) {
      throw new ConfigError(`EC2 fleet: terminateBatchSize must be 1–${TERMINATE_MAX_IDS}`);
    }
    this.#ec2 = deps.ec2;
    this.#log = deps.logger.child({ component: "ec2-capacity" });
    this.#clock = deps.clock;
    this.#template = {
      ...(id === undefined ? { LaunchTemplateName: name } : { LaunchTemplateId: id }),
      Version: version ?? "$Default",
    };
    this.#terminateBatch = batch;
    this.pools = Object.freeze(ec2PoolsFrom(options.instanceTypes, options.subnets));
  }

  /**
   * One CreateFleet (`instant`). The request's `clientToken` goes out as the ClientToken: the
   * SDK's own retries resend the same serialized request, and a caller that retries after a
   * RetryableError passes the same request object, so every retry carries the same token and
   * EC2 answers it with the first call's fleet instead of launching again.
   */
  async launch(request: LaunchRequest, signal?: AbortSignal): Promise<LaunchResult> {
    checkRequest(request);
    const log = this.#log.child({ clientToken: request.clientToken, market: request.market });
    let out: { FleetId?: string; Errors?: Ec2FleetError[]; Instances?: Ec2FleetInstance[] };
    try {
      out = await this.#ec2.send(new CreateFleetCommand(this.#createFleetInput(request)), {
        abortSignal: signal,
      });
    } catch (err) {
      // Checked before "retryable": EC2 sends InsufficientInstanceCapacity as a 500.
      if (!isAbort(err, signal) && classifyEc2ErrorCode(codeOf(err)) === "capacity") {
        log.warn({ awsCode: codeOf(err) }, "CreateFleet refused: no capacity");
        return {
          launched: [],
          errors: [
            {
              market: request.market,
              code: codeOf(err),
              message: (err instanceof Error && err.message) || codeOf(err),
              kind: "capacity",
            },
          ],
        };
      }
      const failure = translate(err, "CreateFleet", signal);
      log.error({ err: failure }, "CreateFleet failed");
      throw failure;
    }

    const now = this.#clock.now();
    const launched = (out.Instances ?? []).flatMap((i) => toLaunched(i, request, now));
    const errors = (out.Errors ?? []).flatMap((e) => toCapacityErrors(e, request));
    const summary = {
      fleetId: out.FleetId,
      requested: request.count,
      launched: launched.length,
      instanceIds: launched.map((i) => i.instanceId),
      errors: errors.map((e) => ({
        code: e.code,
        kind: e.kind,
        pool: e.pool && poolLabel(e.pool),
      })),
    };
    if (errors.length === 0) log.info(summary, "fleet launched");
    else if (launched.length > 0) {
      log.warn(
        summary,
        `${launched.length} instance(s) launched despite ${errors.length} error(s)`,
      );
    } else log.warn(summary, "fleet launched nothing");
    return { launched, errors, ...(out.FleetId ? { requestId: out.FleetId } : {}) };
  }

  /**
   * TerminateInstances, 1000 ids a call. EC2 refuses a whole call when one id does not exist
   * (InvalidInstanceID.NotFound); those ids are dropped and the rest terminated, because gone
   * is what we want. (A just-launched id can briefly be "not found" — eventual consistency;
   * the orphan sweep catches such an instance later by its tags.)
   */
  async terminate(instanceIds: readonly string[], signal?: AbortSignal): Promise<void> {
    const ids = [...new Set(instanceIds)];
    for (let i = 0; i < ids.length; i += this.#terminateBatch) {
      await this.#terminateChunk(ids.slice(i, i + this.#terminateBatch), signal);
    }
  }

  async #terminateChunk(ids: string[], signal?: AbortSignal): Promise<void> {
    let remaining = ids;
    while (remaining.length > 0) {
      try {
        await this.#ec2.send(new TerminateInstancesCommand({ InstanceIds: remaining }), {
          abortSignal: signal,
        });
        this.#log.info({ instanceIds: remaining }, `terminating ${remaining.length} instance(s)`);
        return;
      } catch (err) {
        if (codeOf(err) !== "InvalidInstanceID.NotFound") {
          throw translate(err, "TerminateInstances", signal);
        }
        const named = new Set((err as Error).message.match(/i-[0-9a-f]+/g) ?? []);
        const next = remaining.filter((id) => !named.has(id));
        this.#log.info({ instanceIds: [...named] }, "already gone; not terminating them");
        if (next.length === remaining.length) {
          // The message named none of ours: find the missing ones one by one.
          await this.#terminateOneByOne(remaining, signal);
          return;
        }
        remaining = next;
      }
    }
  }

  async #terminateOneByOne(ids: string[], signal?: AbortSignal): Promise<void> {
    for (const id of ids) {
      try {
        await this.#ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }), {
          abortSignal: signal,
        });
      } catch (err) {
        if (codeOf(err) !== "InvalidInstanceID.NotFound") {
          throw translate(err, "TerminateInstances", signal);
        }
      }
    }
  }

  /** DescribeInstances filtered by every tag, all pages. At least one tag is required. */
  async describe(filter: InstanceFilter, signal?: AbortSignal): Promise<InstanceInfo[]> {
    const filters = Object.entries(filter.tags).map(([key, value]) => ({
      Name: `tag:${key}`,
      Values: [value],
    }));
    if (filters.length === 0) {
      // Without a tag this would list (and an orphan sweep terminate) every instance in the account.
      throw new ShardfleetError("INTERNAL", "describe needs at least one tag to filter by");
    }
    const out: InstanceInfo[] = [];
    let nextToken: string | undefined;
    do {
      let page: DescribeInstancesCommandOutput;
      try {
        page = await this.#ec2.send(
          new DescribeInstancesCommand({
            Filters: filters,
            MaxResults: DESCRIBE_PAGE,
            ...(nextToken ? { NextToken: nextToken } : {}),
          }),
          { abortSignal: signal },
        );
      } catch (err) {
        throw translate(err, "DescribeInstances", signal);
      }
      for (const reservation of page.Reservations ?? []) {
        for (const instance of reservation.Instances ?? []) out.push(toInfo(instance));
      }
      nextToken = page.NextToken || undefined;
    } while (nextToken);
    return out;
  }

  #createFleetInput(request: LaunchRequest): CreateFleetCommandInput {
    const tags = Object.entries(request.tags).map(([Key, Value]) => ({ Key, Value }));
    return {
      Type: "instant",
      ClientToken: request.clientToken,
      TargetCapacitySpecification: {
        TotalTargetCapacity: request.count,
        DefaultTargetCapacityType: request.market,
      },
      SpotOptions: {
        AllocationStrategy: "price-capacity-optimized",
        InstanceInterruptionBehavior: "terminate",
      },
      OnDemandOptions: { AllocationStrategy: "lowest-price" },
      LaunchTemplateConfigs: [
        {
          LaunchTemplateSpecification: this.#template,
          Overrides: request.pools.map((p) => ({
            InstanceType: p.instanceType as _InstanceType,
            // A subnet fixes the AZ; naming both can conflict, so the AZ goes only alone.
            ...(p.subnetId
              ? { SubnetId: p.subnetId }
              : p.availabilityZone
                ? { AvailabilityZone: p.availabilityZone }
                : {}),
          })),
        },
      ],
      TagSpecifications:
        tags.length === 0
          ? undefined
          : [
              { ResourceType: "fleet", Tags: tags },
              { ResourceType: "instance", Tags: tags },
            ],
    };
  }
}

/** A malformed request is the caller's bug; EC2 would only answer it with a vaguer error. */
function checkRequest(request: LaunchRequest): void {
  const problem =
    !Number.isInteger(request.count) || request.count < 1
      ? `count must be a positive integer, got ${request.count}`
      : request.pools.length === 0
        ? "pools is empty"
        : !/^[\x20-\x7e]{1,64}$/.test(request.clientToken)
          ? "clientToken must be 1–64 printable ASCII characters"
          : undefined;
  if (problem) throw new ShardfleetError("INTERNAL", `launch request: ${problem}`);
}

function marketOf(lifecycle: string | undefined): Market | undefined {
  if (lifecycle === "spot") return "spot";
  if (lifecycle === "on-demand") return "on-demand";
  return undefined;
}

function toLaunched(
  item: Ec2FleetInstance,
  request: LaunchRequest,
  now: number,
): LaunchedInstance[] {
  const o = item.LaunchTemplateAndOverrides?.Overrides;
  const availabilityZone = item.AvailabilityZone ?? o?.AvailabilityZone;
  const subnetId = item.SubnetId ?? o?.SubnetId;
  return (item.InstanceIds ?? []).map((instanceId) => ({
    instanceId,
    // Lifecycle is absent only when the fleet used its default capacity type.
    market: marketOf(item.Lifecycle) ?? request.market,
    instanceType: item.InstanceType ?? o?.InstanceType ?? "unknown",
    ...(availabilityZone ? { availabilityZone } : {}),
    ...(subnetId ? { subnetId } : {}),
    launchedAt: now,
  }));
}

/** One error per request pool it concerns; without an override it concerns the whole request. */
function toCapacityErrors(e: Ec2FleetError, request: LaunchRequest): CapacityError[] {
  const code = bareAwsCode(e.ErrorCode ?? "Unknown");
  const base = {
    code,
    message: e.ErrorMessage ?? code,
    kind: classifyEc2ErrorCode(code),
    ...(marketOf(e.Lifecycle) ? { market: marketOf(e.Lifecycle)! } : {}),
  };
  const pools = poolsOf(e.LaunchTemplateAndOverrides?.Overrides, request.pools);
  return pools.length === 0 ? [base] : pools.map((pool) => ({ ...base, pool }));
}

/** The request's pools an answer's override names (or a pool built from it if none matches). */
function poolsOf(o: FleetLaunchTemplateOverrides | undefined, pools: readonly Pool[]): Pool[] {
  if (!o || (!o.InstanceType && !o.SubnetId && !o.AvailabilityZone)) return [];
  const matches = pools.filter(
    (p) =>
      (!o.InstanceType || p.instanceType === o.InstanceType) &&
      (!o.SubnetId || !p.subnetId || p.subnetId === o.SubnetId) &&
      (!o.AvailabilityZone || !p.availabilityZone || p.availabilityZone === o.AvailabilityZone),
  );
  if (matches.length > 0) return matches;
  return [
    {
      instanceType: o.InstanceType ?? "unknown",
      ...(o.SubnetId ? { subnetId: o.SubnetId } : {}),
      ...(o.AvailabilityZone ? { availabilityZone: o.AvailabilityZone } : {}),
    },
  ];
}

function toState(name: string | undefined): InstanceState {
  switch (name) {
    case "running":
    case "shutting-down":
    case "terminated":
    case "stopped":
      return name;
    case "stopping":
      return "stopped";
    default:
      return "pending";
  }
}

function toInfo(i: Instance): InstanceInfo {
  return {
    instanceId: i.InstanceId ?? "",
    // InstanceLifecycle is "spot" for spot and absent for on-demand.
    market: i.InstanceLifecycle === "spot" ? "spot" : "on-demand",
    instanceType: i.InstanceType ?? "unknown",
    ...(i.Placement?.AvailabilityZone ? { availabilityZone: i.Placement.AvailabilityZone } : {}),
    state: toState(i.State?.Name),
    launchedAt: i.LaunchTime ? new Date(i.LaunchTime).getTime() : 0,
    tags: Object.fromEntries(
      (i.Tags ?? [])
        .filter((t): t is Tag & { Key: string } => t.Key !== undefined)
        .map((t) => [t.Key, t.Value ?? ""]),
    ),
  };
}
