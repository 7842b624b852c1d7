/**
 * Where the scheduler API runs: one on-demand instance from the worker image, with the
 * scheduler role, running shardfleet-scheduler.service with `SHARDFLEET_CAPACITY=ec2`.
 *
 * Plain HTTP on API_PORT, reachable only from the configured admin CIDR. There is no TLS and
 * no authentication in front of it yet (docs/deploy.md says so); reach it from the admin
 * network or through an SSM port-forward. An on-demand instance because the scheduler holds
 * the fleet's state in memory between ticks and must not be reclaimed like a spot worker.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { envFileUserData } from "./compute.ts";

/** `SHARDFLEET_API_PORT` on the instance, and the only inbound port of its security group. */
export const API_PORT = 8080;
/** The file the image's shardfleet-scheduler.service reads (ami/ansible shardfleet_scheduler). */
export const SCHEDULER_ENV_FILE = "/etc/shardfleet/scheduler.env";

export interface SchedulerArgs {
  readonly amiId: string;
  readonly instanceType: string;
  readonly instanceProfileName: pulumi.Input<string>;
  readonly vpcId: pulumi.Input<string>;
  /** The scheduler runs in the first; the fleet manager may launch workers in all. */
  readonly subnetIds: pulumi.Input<string[]>;
  /** The only source allowed to reach API_PORT. */
  readonly adminCidr: string;
  readonly settings: {
    readonly region: pulumi.Input<string>;
    readonly bucket: pulumi.Input<string>;
    readonly workQueueUrl: pulumi.Input<string>;
    readonly stragglerQueueUrl: pulumi.Input<string>;
    readonly dlqUrl: pulumi.Input<string>;
    readonly launchTemplateId: pulumi.Input<string>;
    readonly instanceTypes: readonly string[];
    readonly visibilityTimeoutSeconds: number;
  };
  /** Tags for every taggable child. */
  readonly tags: Record<string, string>;
}

export class SchedulerComponent extends pulumi.ComponentResource {
  /** `http://<public ip>:8080`, for `shardfleet … --api`. */
  public readonly apiEndpoint: pulumi.Output<string>;
  public readonly instanceId: pulumi.Output<string>;

  constructor(name: string, args: SchedulerArgs, opts?: pulumi.ComponentResourceOptions) {
    super("shardfleet:scheduler:Scheduler", name, {}, opts);
    const parent = { parent: this };
    const s = args.settings;

    const group = new aws.ec2.SecurityGroup(
      `${name}-sg`,
      {
        vpcId: args.vpcId,
        description: `shardfleet scheduler: API port ${API_PORT} from the admin CIDR only`,
        ingress: [
          {
            description: "shardfleet API (HTTP)",
            protocol: "tcp",
            fromPort: API_PORT,
            toPort: API_PORT,
            cidrBlocks: [args.adminCidr],
          },
        ],
        egress: [{ protocol: "-1", fromPort: 0, toPort: 0, cidrBlocks: ["0.0.0.0/0"] }],
        tags: args.tags,
      },
      parent,
    );

    const subnetIds = pulumi.output(args.subnetIds);
    const userData = pulumi
      .all([
        s.region,
        s.bucket,
        s.workQueueUrl,
        s.stragglerQueueUrl,
        s.dlqUrl,
        s.launchTemplateId,
        subnetIds,
      ])
      .apply(([region, bucket, work, straggler, dlq, template, subnets]) =>
        envFileUserData(
          SCHEDULER_ENV_FILE,
          {
            NODE_ENV: "production",
            AWS_REGION: region,
            SHARDFLEET_BUCKET: bucket,
            SHARDFLEET_WORK_QUEUE_URL: work,
            SHARDFLEET_STRAGGLER_QUEUE_URL: straggler,
            SHARDFLEET_DLQ_URL: dlq,
            SHARDFLEET_VISIBILITY_TIMEOUT_S: String(s.visibilityTimeoutSeconds),
            SHARDFLEET_API_HOST: "0.0.0.0",
            SHARDFLEET_API_PORT: String(API_PORT),
            SHARDFLEET_CAPACITY: "ec2",
            SHARDFLEET_EC2_LAUNCH_TEMPLATE: template,
            SHARDFLEET_EC2_SUBNETS: subnets.join(","),
            SHARDFLEET_EC2_INSTANCE_TYPES: s.instanceTypes.join(","),
          },
          // The image enables the worker at boot; this instance is the scheduler instead.
          [
            "systemctl disable --now shardfleet-worker.service",
            "systemctl enable shardfleet-scheduler.service",
            "systemctl restart shardfleet-scheduler.service",
          ],
        ),
      );

    const instance = new aws.ec2.Instance(
      `${name}-instance`,
      {
        ami: args.amiId,
        instanceType: args.instanceType,
        iamInstanceProfile: args.instanceProfileName,
        subnetId: subnetIds.apply((ids) => {
          const first = ids[0];
          if (first === undefined) throw new pulumi.RunError("the stack has no subnet");
          return first;
        }),
        vpcSecurityGroupIds: [group.id],
        associatePublicIpAddress: true,
        metadataOptions: {
          httpEndpoint: "enabled",
          httpTokens: "required",
          httpPutResponseHopLimit: 1,
        },
        rootBlockDevice: { encrypted: true, volumeType: "gp3" },
        userData,
        // New settings must reach the env file, which user data writes only at first boot.
        userDataReplaceOnChange: true,
        tags: { ...args.tags, Name: `${name}` },
        volumeTags: args.tags,
      },
      parent,
    );

    this.instanceId = instance.id;
    this.apiEndpoint = pulumi.interpolate`http://${instance.publicIp}:${API_PORT}`;
    this.registerOutputs({ apiEndpoint: this.apiEndpoint, instanceId: this.instanceId });
  }
}
