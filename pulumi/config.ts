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
}

export const DEFAULT_SETTINGS: StackSettings = Object.freeze({
  namePrefix: "shardfleet",
  visibilityTimeoutSeconds: 60,
  maxReceiveCount: 10,
  tempObjectExpirationDays: 7,
  instanceTypes: Object.freeze(["c7i.large", "c6i.large", "m7i.large"]),
});

/** Short enough that every generated name (bucket, role, queue) stays within AWS limits. */
const NAME_PREFIX = /^[a-z][a-z0-9-]{0,23}$/;
const INSTANCE_TYPE = /^[a-z][a-z0-9-]*\.[a-z0-9]+$/;

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
  });
}

/** Tags that every taggable resource carries, so cost and ownership can be traced per stack. */
export function stackTags(): Record<string, string> {
  return { project: "shardfleet", stack: pulumi.getStack() };
}
