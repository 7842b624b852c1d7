/**
 * The stack's settings, read once from `shardfleet:*` config into a frozen object. The defaults
 * mirror the `config:` block of Pulumi.yaml (which the CLI applies), so a run without the CLI,
 * such as the unit tests, builds the same stack. A value out of range fails the run with a
 * message that names the key.
 */
import * as pulumi from "@pulumi/pulumi";

export interface StackSettings {
  /** Begins every resource name. @default "shardfleet" */
  readonly namePrefix: string;
  /** SQS visibility timeout of all three queues, 0-43200 s. @default 60 */
  readonly visibilityTimeoutSeconds: number;
  /** Receives before a shard message moves to the dead-letter queue, 1-1000. @default 10 */
  readonly maxReceiveCount: number;
  /** Days after which objects under `operations/` expire, at least 1. @default 7 */
  readonly tempObjectExpirationDays: number;
  /** Instance types the fleet manager may request, most preferred first. */
  readonly instanceTypes: readonly string[];
  /** The on-demand instance that runs the scheduler API. @default "t3.small" */
  readonly schedulerInstanceType: string;
}

/** Settings without a default: where the stack runs and who may reach it. */
export interface DeploymentSettings {
  /** The image built by ami/ansible, for workers and the scheduler alike. */
  readonly workerAmiId: string;
  /** The only source (IPv4 CIDR) that may reach the scheduler API port. */
  readonly adminCidr: string;
  /** An existing VPC and at least two of its subnets; absent: the stack creates a VPC. */
  readonly existingNetwork?: { readonly vpcId: string; readonly subnetIds: readonly string[] };
}

/** Every `shardfleet:*` key the program reads; Pulumi.yaml must describe exactly these. */
export const CONFIG_KEYS = [
  "namePrefix",
  "visibilityTimeoutSeconds",
  "maxReceiveCount",
  "tempObjectExpirationDays",
  "instanceTypes",
  "schedulerInstanceType",
  "workerAmiId",
  "adminCidr",
  "vpcId",
  "subnetIds",
] as const;

export const DEFAULT_SETTINGS: StackSettings = Object.freeze({
  namePrefix: "shardfleet",
  visibilityTimeoutSeconds: 60,
  maxReceiveCount: 10,
  tempObjectExpirationDays: 7,
  instanceTypes: Object.freeze(["c7i.large", "c6i.large", "m7i.large"]),
  schedulerInstanceType: "t3.small",
});

/** Short enough that every generated name (bucket, role, queue) stays within AWS limits. */
const NAME_PREFIX = /^[a-z][a-z0-9-]{0,23}$/;
const INSTANCE_TYPE = /^[a-z][a-z0-9-]*\.[a-z0-9]+$/;
const AMI_ID = /^ami-[0-9a-f]{8,17}$/;
const VPC_ID = /^vpc-[0-9a-f]{8,17}$/;
const SUBNET_ID = /^subnet-[0-9a-f]{8,17}$/;
const IPV4_CIDR = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}\/(3[0-2]|[12]?\d)$/;

function integer(
  config: pulumi.Config,
  key: keyof StackSettings,
  fallback: number,
  range: { min: number; max: number },
): number {
  const value = config.getNumber(key, range) ?? fallback;
  if (!Number.isInteger(value)) {
    throw new pulumi.RunError(`${config.name}:${key} must be a whole number, got ${value}`);
  }
  return value;
}

/** Reads and checks the stack's settings; `config` defaults to the project's namespace. */
export function readSettings(config: pulumi.Config = new pulumi.Config()): StackSettings {
  const namePrefix =
    config.get("namePrefix", { pattern: NAME_PREFIX }) ?? DEFAULT_SETTINGS.namePrefix;

  const instanceTypes =
    config.getObject<unknown>("instanceTypes") ?? DEFAULT_SETTINGS.instanceTypes;
  if (
    !Array.isArray(instanceTypes) ||
    instanceTypes.length === 0 ||
    !instanceTypes.every((t) => typeof t === "string" && INSTANCE_TYPE.test(t))
  ) {
    throw new pulumi.RunError(
      `${config.name}:instanceTypes must be a non-empty list of instance types such as ` +
        `["c7i.large"], got ${JSON.stringify(instanceTypes)}`,
    );
  }

  return Object.freeze({
    namePrefix,
    visibilityTimeoutSeconds: integer(
      config,
      "visibilityTimeoutSeconds",
      DEFAULT_SETTINGS.visibilityTimeoutSeconds,
      { min: 0, max: 43_200 },
    ),
    maxReceiveCount: integer(config, "maxReceiveCount", DEFAULT_SETTINGS.maxReceiveCount, {
      min: 1,
      max: 1_000,
    }),
    tempObjectExpirationDays: integer(
      config,
      "tempObjectExpirationDays",
      DEFAULT_SETTINGS.tempObjectExpirationDays,
      { min: 1, max: 3_650 },
    ),
    instanceTypes: Object.freeze([...(instanceTypes as string[])]),
    schedulerInstanceType:
      config.get("schedulerInstanceType", { pattern: INSTANCE_TYPE }) ??
      DEFAULT_SETTINGS.schedulerInstanceType,
  });
}

/**
 * Reads the settings that have no safe default. The API's source CIDR is required on purpose:
 * a default of 0.0.0.0/0 would put an unauthenticated API on the internet.
 */
export function readDeploymentSettings(
  config: pulumi.Config = new pulumi.Config(),
): DeploymentSettings {
  const workerAmiId = config.require("workerAmiId", { pattern: AMI_ID });
  const adminCidr = config.require("adminCidr", { pattern: IPV4_CIDR });
  const vpcId = config.get("vpcId", { pattern: VPC_ID });
  const subnetIds = config.getObject<unknown>("subnetIds");
  if (vpcId === undefined && subnetIds === undefined) {
    return Object.freeze({ workerAmiId, adminCidr });
  }
  if (
    vpcId === undefined ||
    !Array.isArray(subnetIds) ||
    subnetIds.length < 2 ||
    !subnetIds.every((s) => typeof s === "string" && SUBNET_ID.test(s))
  ) {
    throw new pulumi.RunError(
      `${config.name}:vpcId and ${config.name}:subnetIds go together: a vpc-… id and a list ` +
        `of at least two subnet-… ids in different AZs, got ${JSON.stringify({ vpcId, subnetIds })}`,
    );
  }
  return Object.freeze({
    workerAmiId,
    adminCidr,
    existingNetwork: Object.freeze({
      vpcId,
      subnetIds: Object.freeze([...(subnetIds as string[])]),
    }),
  });
}

/** Tags that every taggable resource carries, so cost and ownership can be traced per stack. */
export function stackTags(): Record<string, string> {
  return { project: "shardfleet", stack: pulumi.getStack() };
}
