/**
 * The stack's settings, read once from `shardfleet:*` config into a frozen object. The defaults
 * mirror the `config:` block of Pulumi.yaml (which the CLI applies), so a run without the CLI,
 * such as the unit tests, builds the same stack. A value out of range fails the run with a
 * message that names the key.
 */
import * as pulumi from "@pulumi/pulumi";
import { parseApiTokens } from "../src/shared/config.ts";
import type { ApiToken } from "../src/shared/schemas/tokens.ts";

export interface StackSettings {
  /** Begins every resource name. @default "shardfleet" */
  readonly namePrefix: string;
  /** SQS visibility timeout of all three queues, 5-43200 s. @default 60 */
  readonly visibilityTimeoutSeconds: number;
  /** Receives before a shard message moves to the dead-letter queue, 1-1000. @default 10 */
  readonly maxReceiveCount: number;
  /**
   * Days after which temporary objects under `scratch/` expire, at least 1; the records under
   * `operations/` (manifest, output, cost report) never do. @default 7
   */
  readonly tempObjectExpirationDays: number;
  /** Instance types the fleet manager may request, most preferred first. */
  readonly instanceTypes: readonly string[];
  /** The on-demand instance that runs the scheduler API. @default "t3.small" */
  readonly schedulerInstanceType: string;
  /** Days the log group keeps shipped log events; one of LOG_RETENTION_DAYS. @default 30 */
  readonly logRetentionDays: number;
  /**
   * The image's root device name, which the worker launch template maps to an encrypted gp3
   * volume. It must be the AMI's own (`RootDeviceName`), or workers get an extra empty volume
   * and an unencrypted root. @default "/dev/xvda"
   */
  readonly workerRootDeviceName: string;
}

/**
 * How the API's load balancer listens: HTTPS with an ACM certificate, or (dev stacks only,
 * `apiPlainHttp`) plain HTTP.
 */
export type ApiListener =
  | { readonly protocol: "HTTPS"; readonly certificateArn: string }
  | { readonly protocol: "HTTP" };

/** The scheduler API's front door: the listener and, optionally, its DNS name. */
export interface ApiSettings {
  readonly listener: ApiListener;
  /** The name clients use (and the certificate covers); absent: the load balancer's name. */
  readonly domainName?: string;
  /** A Route 53 zone in which to alias `domainName` to the load balancer; only with it. */
  readonly hostedZoneId?: string;
}

/** Settings without a default: where the stack runs and who may reach it. */
export interface DeploymentSettings {
  /** The image built by ami/ansible, for workers and the scheduler alike. */
  readonly workerAmiId: string;
  /** The only source (IPv4 CIDR) that may reach the API's load balancer. */
  readonly adminCidr: string;
  readonly api: ApiSettings;
  /** An existing VPC and at least two of its subnets; absent: the stack creates a VPC. */
  readonly existingNetwork?: { readonly vpcId: string; readonly subnetIds: readonly string[] };
}

/**
 * Every `shardfleet:*` key the program reads; Pulumi.yaml must describe exactly these, in its
 * `config:` block or, for SECRET_CONFIG_KEYS, in a comment there.
 */
export const CONFIG_KEYS = [
  "namePrefix",
  "visibilityTimeoutSeconds",
  "maxReceiveCount",
  "tempObjectExpirationDays",
  "instanceTypes",
  "schedulerInstanceType",
  "logRetentionDays",
  "workerRootDeviceName",
  "workerAmiId",
  "adminCidr",
  "apiCertificateArn",
  "apiDomainName",
  "apiHostedZoneId",
  "apiPlainHttp",
  "vpcId",
  "subnetIds",
  "apiToken",
  "sesFromAddress",
  "alarmEmail",
  "alarmHourlyUsd",
] as const;

/**
 * The keys Pulumi.yaml declares without a default. The CLI treats every declared key without
 * one as required ("Stack '…' is missing configuration value …" before the program runs), so
 * only these may lack a default; every optional key declares one, `""`, `[]` or `false` for
 * "unset", which the readers below take as absent.
 */
export const REQUIRED_CONFIG_KEYS = ["workerAmiId", "adminCidr"] as const;

/**
 * Optional secrets, which Pulumi.yaml describes in a comment instead of declaring: declared
 * without a default they would be required, and with one every run fails ("… must be encrypted
 * as it's secret"), since a default is plaintext.
 */
export const SECRET_CONFIG_KEYS = ["apiToken"] as const;

/**
 * The visibility timeouts the services accept (`SHARDFLEET_VISIBILITY_TIMEOUT_S`,
 * src/shared/config.ts); a stack value outside would make them exit at start.
 */
export const VISIBILITY_TIMEOUT_RANGE = { min: 5, max: 43_200 } as const;

export const DEFAULT_SETTINGS: StackSettings = Object.freeze({
  namePrefix: "shardfleet",
  visibilityTimeoutSeconds: 60,
  maxReceiveCount: 10,
  tempObjectExpirationDays: 7,
  instanceTypes: Object.freeze(["c7i.large", "c6i.large", "m7i.large"]),
  schedulerInstanceType: "t3.small",
  logRetentionDays: 30,
  workerRootDeviceName: "/dev/xvda",
});

/**
 * The retention periods CloudWatch Logs accepts (PutRetentionPolicy). The provider's 0, "never
 * expire", is left out on purpose: shipped logs are for debugging, not an archive.
 */
export const LOG_RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288,
  3653,
] as const;

/** Short enough that every generated name (bucket, role, queue) stays within AWS limits. */
const NAME_PREFIX = /^[a-z][a-z0-9-]{0,23}$/;
const INSTANCE_TYPE = /^[a-z][a-z0-9-]*\.[a-z0-9]+$/;
const AMI_ID = /^ami-[0-9a-f]{8,17}$/;
const VPC_ID = /^vpc-[0-9a-f]{8,17}$/;
const SUBNET_ID = /^subnet-[0-9a-f]{8,17}$/;
const IPV4_CIDR = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}\/(3[0-2]|[12]?\d)$/;
/** An ACM certificate: `arn:<partition>:acm:<region>:<account>:certificate/<uuid>`. */
const CERTIFICATE_ARN =
  /^arn:aws[a-z-]*:acm:[a-z]{2}(-[a-z]+)+-\d:\d{12}:certificate\/[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$/;
/** A fully qualified lowercase host name without the trailing dot, e.g. api.example.com. */
const DOMAIN_NAME = /^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;
const HOSTED_ZONE_ID = /^Z[0-9A-Z]{1,31}$/;
/** A block device name as an AMI reports it, e.g. /dev/xvda or /dev/sda1. */
const DEVICE_NAME = /^\/dev\/[a-z][a-z0-9]*$/;

/**
 * An optional string key: absent or `""` (its Pulumi.yaml default) is unset; anything else
 * must match `pattern`.
 */
function optionalString(config: pulumi.Config, key: string, pattern: RegExp): string | undefined {
  return config.get(key) ? config.get(key, { pattern }) : undefined;
}

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

  const logRetentionDays =
    config.getNumber("logRetentionDays") ?? DEFAULT_SETTINGS.logRetentionDays;
  if (!(LOG_RETENTION_DAYS as readonly number[]).includes(logRetentionDays)) {
    throw new pulumi.RunError(
      `${config.name}:logRetentionDays must be one of CloudWatch's retention periods ` +
        `(${LOG_RETENTION_DAYS.join(", ")}), got ${logRetentionDays}`,
    );
  }

  return Object.freeze({
    namePrefix,
    visibilityTimeoutSeconds: integer(
      config,
      "visibilityTimeoutSeconds",
      DEFAULT_SETTINGS.visibilityTimeoutSeconds,
      VISIBILITY_TIMEOUT_RANGE,
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
    logRetentionDays,
    workerRootDeviceName:
      config.get("workerRootDeviceName", { pattern: DEVICE_NAME }) ??
      DEFAULT_SETTINGS.workerRootDeviceName,
  });
}

/**
 * Reads the settings that have no safe default. The API's source CIDR is required on purpose:
 * a default of 0.0.0.0/0 would put an unauthenticated API on the internet. So is its
 * certificate: plain HTTP takes an explicit `apiPlainHttp: true`, meant for dev stacks.
 */
export function readDeploymentSettings(
  config: pulumi.Config = new pulumi.Config(),
): DeploymentSettings {
  const workerAmiId = config.require("workerAmiId", { pattern: AMI_ID });
  const adminCidr = config.require("adminCidr", { pattern: IPV4_CIDR });
  const api = readApiSettings(config);
  const vpcId = optionalString(config, "vpcId", VPC_ID);
  const listed = config.getObject<unknown>("subnetIds");
  // [] is the key's Pulumi.yaml default: no subnets given.
  const subnetIds = Array.isArray(listed) && listed.length === 0 ? undefined : listed;
  if (vpcId === undefined && subnetIds === undefined) {
    return Object.freeze({ workerAmiId, adminCidr, api });
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
    api,
    existingNetwork: Object.freeze({
      vpcId,
      subnetIds: Object.freeze([...(subnetIds as string[])]),
    }),
  });
}

function readApiSettings(config: pulumi.Config): ApiSettings {
  const certificateArn = optionalString(config, "apiCertificateArn", CERTIFICATE_ARN);
  const plainHttp = config.getBoolean("apiPlainHttp") ?? false;
  const domainName = optionalString(config, "apiDomainName", DOMAIN_NAME);
  const hostedZoneId = optionalString(config, "apiHostedZoneId", HOSTED_ZONE_ID);

  if (certificateArn === undefined && !plainHttp) {
    throw new pulumi.RunError(
      `${config.name}:apiCertificateArn is required: the ARN of an ACM certificate, in the ` +
        `stack's region, for the API's HTTPS listener (docs/deploy.md shows how to request one). ` +
        `A dev stack may set ${config.name}:apiPlainHttp true instead.`,
    );
  }
  if (certificateArn !== undefined && plainHttp) {
    throw new pulumi.RunError(
      `${config.name}:apiCertificateArn and ${config.name}:apiPlainHttp exclude each other: ` +
        `remove one`,
    );
  }
  if (hostedZoneId !== undefined && domainName === undefined) {
    throw new pulumi.RunError(
      `${config.name}:apiHostedZoneId needs ${config.name}:apiDomainName, the record to create`,
    );
  }
  return Object.freeze({
    listener: Object.freeze(
      certificateArn === undefined
        ? { protocol: "HTTP" as const }
        : { protocol: "HTTPS" as const, certificateArn },
    ),
    ...(domainName === undefined ? {} : { domainName }),
    ...(hostedZoneId === undefined ? {} : { hostedZoneId }),
  });
}

/**
 * The tokens in an `apiToken` value, checked as the scheduler checks them at start (one a line,
 * at least 32 characters, sendable in a header), so a bad one stops `pulumi up` instead. The
 * message names the key and line, never the value.
 */
export function apiTokenLines(value: string, key: string): ApiToken[] {
  try {
    return parseApiTokens(value, key);
  } catch (err) {
    throw new pulumi.RunError((err as Error).message);
  }
}

/**
 * The API's bearer token(s), a secret (`pulumi config set --secret`); one a line, two during a
 * rotation. Absent: the API is unauthenticated, and the run warns about it.
 */
export function readApiToken(
  config: pulumi.Config = new pulumi.Config(),
): pulumi.Output<string> | undefined {
  const key = `${config.name}:apiToken`;
  const token = config.getSecret("apiToken");
  if (token === undefined) {
    void pulumi.log.warn(
      `${key} is not set: the scheduler API has no authentication, and anyone inside ` +
        `${config.name}:adminCidr can submit, read and download. Set one with ` +
        `pulumi config set --secret ${key} "$(openssl rand -hex 32)"`,
    );
    return undefined;
  }
  // Checked inside apply so that the value stays a secret (pulumi's own range and pattern
  // checks would print it).
  return token.apply((value) => {
    apiTokenLines(value, key);
    return value;
  });
}

/** Tags that every taggable resource carries, so cost and ownership can be traced per stack. */
export function stackTags(): Record<string, string> {
  return { project: "shardfleet", stack: pulumi.getStack() };
}
