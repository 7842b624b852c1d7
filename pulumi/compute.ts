/**
 * The worker launch template that the scheduler's fleet manager names in CreateFleet. It fixes
 * what every worker is (image, identity, network lock-down, metadata hardening, settings); the
 * fleet request picks only the instance type, subnet and market.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

export interface ComputeArgs {
  /** The image built by ami/ansible. */
  readonly amiId: string;
  /** The worker instance profile. */
  readonly instanceProfileName: pulumi.Input<string>;
  /** The workers' security group (no inbound). */
  readonly securityGroupId: pulumi.Input<string>;
  /** The image's root device name, which the template maps to an encrypted volume. */
  readonly rootDeviceName: string;
  /** Non-secret settings written to the worker's environment file at boot. */
  readonly settings: WorkerBootSettings;
  /** Tags for the template and for the instances and volumes it launches. */
  readonly tags: Record<string, string>;
}

/** The settings both boot scripts write: the worker's, and the scheduler's common part. */
export interface WorkerBootSettings {
  readonly region: pulumi.Input<string>;
  readonly bucket: pulumi.Input<string>;
  readonly workQueueUrl: pulumi.Input<string>;
  readonly stragglerQueueUrl: pulumi.Input<string>;
  readonly dlqUrl: pulumi.Input<string>;
  /** Must match the queues' visibility timeout, which the worker's heartbeat extends. */
  readonly visibilityTimeoutSeconds: number;
  /** Where the image's optional log shipping sends the worker's log lines. */
  readonly logGroupName: pulumi.Input<string>;
}

/**
 * Fluent Bit's setting for the log group (ami/ansible role shardfleet_log_shipping). Not a
 * `SHARDFLEET_*` name: the services refuse unknown ones, and ignore this one.
 */
export const LOG_GROUP_VARIABLE = "CLOUDWATCH_LOG_GROUP";

/** The environment both services get from these settings (the scheduler adds its own). */
export function serviceEnv(s: WorkerBootSettings): Record<string, pulumi.Input<string>> {
  return {
    NODE_ENV: "production",
    AWS_REGION: s.region,
    SHARDFLEET_BUCKET: s.bucket,
    SHARDFLEET_WORK_QUEUE_URL: s.workQueueUrl,
    SHARDFLEET_STRAGGLER_QUEUE_URL: s.stragglerQueueUrl,
    SHARDFLEET_DLQ_URL: s.dlqUrl,
    SHARDFLEET_VISIBILITY_TIMEOUT_S: String(s.visibilityTimeoutSeconds),
    [LOG_GROUP_VARIABLE]: s.logGroupName,
  };
}

/** The file the image's shardfleet-worker.service reads (ami/ansible shardfleet_worker defaults). */
const WORKER_ENV_FILE = "/etc/shardfleet/worker.env";
/** The system group of the image's service user; it alone may read the settings. */
const SERVICE_GROUP = "shardfleet";

/**
 * A boot script that writes `file` (mode 0640, root:shardfleet) with `env` and restarts `unit`.
 * Only names and URLs go in: user data is readable by anyone who can describe the instance
 * attribute, so no secret may ever be put here (credentials come from the instance profile).
 */
export function envFileUserData(
  file: string,
  env: Record<string, string>,
  commands: readonly string[],
): string {
  for (const [name, value] of Object.entries(env)) {
    // The heredoc is quoted, so nothing is expanded; a newline would still split the line.
    if (!/^[A-Z][A-Z0-9_]*$/.test(name) || /[\r\n]/.test(value)) {
      throw new pulumi.RunError(`user data setting ${name} is not a single NAME=value line`);
    }
  }
  const lines = Object.entries(env)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, value]) => `${name}=${value}`);
  return [
    "#!/bin/bash",
    "set -euo pipefail",
    "umask 027",
    `install -d -o root -g ${SERVICE_GROUP} -m 0750 ${file.slice(0, file.lastIndexOf("/"))}`,
    // Write then rename, so the service never reads a half-written file.
    `cat > ${file}.new <<'SHARDFLEET_ENV'`,
    ...lines,
    "SHARDFLEET_ENV",
    `chown root:${SERVICE_GROUP} ${file}.new`,
    `chmod 0640 ${file}.new`,
    `mv ${file}.new ${file}`,
    ...commands,
    "",
  ].join("\n");
}

export class ComputeComponent extends pulumi.ComponentResource {
  /** For `SHARDFLEET_EC2_LAUNCH_TEMPLATE`. */
  public readonly launchTemplateId: pulumi.Output<string>;
  public readonly launchTemplateArn: pulumi.Output<string>;

  constructor(name: string, args: ComputeArgs, opts?: pulumi.ComponentResourceOptions) {
    super("shardfleet:compute:Compute", name, {}, opts);
    const parent = { parent: this };
    const userData = pulumi.output(serviceEnv(args.settings)).apply((env) =>
      Buffer.from(
        envFileUserData(
          WORKER_ENV_FILE,
          env,
          // The unit may have started (and failed) before the file existed.
          ["systemctl restart shardfleet-worker.service"],
        ),
      ).toString("base64"),
    );

    const instanceTags = { ...args.tags, Name: `${name}-worker` };
    const template = new aws.ec2.LaunchTemplate(
      `${name}-worker`,
      {
        description: "shardfleet worker",
        imageId: args.amiId,
        iamInstanceProfile: { name: args.instanceProfileName },
        vpcSecurityGroupIds: [args.securityGroupId],
        // A worker that powers itself off is gone for good; a stopped spot worker costs EBS.
        instanceInitiatedShutdownBehavior: "terminate",
        metadataOptions: {
          httpEndpoint: "enabled",
          // IMDSv2 only, one hop: a container or proxy on the host cannot reach the credentials.
          httpTokens: "required",
          httpPutResponseHopLimit: 1,
        },
        monitoring: { enabled: false },
        // The root volume, encrypted (with the account's default EBS key) whatever the image's
        // snapshot is; the size stays the image's. A name that is not the image's root device
        // would add a second volume instead, so it comes from config (workerRootDeviceName).
        blockDeviceMappings: [
          {
            deviceName: args.rootDeviceName,
            ebs: { encrypted: "true", volumeType: "gp3", deleteOnTermination: "true" },
          },
        ],
        userData,
        // The fleet manager launches the `$Default` version, so each update must become it.
        updateDefaultVersion: true,
        tagSpecifications: [
          { resourceType: "instance", tags: instanceTags },
          { resourceType: "volume", tags: instanceTags },
        ],
        tags: args.tags,
      },
      parent,
    );

    this.launchTemplateId = template.id;
    this.launchTemplateArn = template.arn;
    this.registerOutputs({ launchTemplateId: this.launchTemplateId });
  }
}
