/**
 * The scheduler instance as an Auto Scaling group of one (min = max = desired = 1): a launch
 * template with the scheduler's image, role, user data and security group, and a group across
 * every subnet of the stack, registered with the API's target group. The group replaces the
 * instance without a human when the instance fails its EC2 status checks or, after a boot grace
 * period, the load balancer's `/healthz` check (health check type ELB covers both).
 *
 * At most one scheduler acts on the bucket whatever the group does: during a replacement or an
 * instance refresh the new instance stands by until the old one's scheduler lease lapses or is
 * released (src/scheduler/lease/).
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

/** Boot, Node and the scheduler's start before the load balancer's verdict counts. */
export const SCHEDULER_HEALTH_GRACE_SECONDS = 300;

export interface SchedulerGroupArgs {
  readonly amiId: string;
  readonly instanceType: string;
  readonly instanceProfileName: pulumi.Input<string>;
  readonly securityGroupId: pulumi.Input<string>;
  /** Every subnet the instance may run in (one AZ failing, the group launches in another). */
  readonly subnetIds: pulumi.Input<string[]>;
  /** The image's root device name, whose volume the template encrypts. */
  readonly rootDeviceName: string;
  /** The boot script (plain text; base64-encoded here as launch templates want it). */
  readonly userData: pulumi.Input<string>;
  /** The API's target group: the group registers its instance there and reads its health. */
  readonly targetGroupArn: pulumi.Input<string>;
  readonly tags: Record<string, string>;
}

export interface SchedulerGroup {
  readonly launchTemplate: aws.ec2.LaunchTemplate;
  readonly group: aws.autoscaling.Group;
}

/** Builds the launch template and the group of one as children of `parent`. */
export function schedulerGroup(
  name: string,
  args: SchedulerGroupArgs,
  parent: pulumi.Resource,
): SchedulerGroup {
  const instanceTags = { ...args.tags, Name: name };
  const launchTemplate = new aws.ec2.LaunchTemplate(
    `${name}-launch-template`,
    {
      description: "shardfleet scheduler",
      imageId: args.amiId,
      instanceType: args.instanceType,
      iamInstanceProfile: { name: args.instanceProfileName },
      networkInterfaces: [
        {
          deviceIndex: 0,
          // For outbound calls only (there is no NAT gateway); the group admits no address.
          associatePublicIpAddress: "true",
          securityGroups: [args.securityGroupId],
          deleteOnTermination: "true",
        },
      ],
      metadataOptions: {
        httpEndpoint: "enabled",
        httpTokens: "required",
        httpPutResponseHopLimit: 1,
      },
      blockDeviceMappings: [
        {
          deviceName: args.rootDeviceName,
          ebs: { encrypted: "true", volumeType: "gp3", deleteOnTermination: "true" },
        },
      ],
      userData: pulumi
        .output(args.userData)
        .apply((script) => Buffer.from(script).toString("base64")),
      updateDefaultVersion: true,
      tagSpecifications: [
        { resourceType: "instance", tags: instanceTags },
        { resourceType: "volume", tags: instanceTags },
      ],
      tags: args.tags,
    },
    { parent },
  );

  const group = new aws.autoscaling.Group(
    `${name}-group`,
    {
      minSize: 1,
      maxSize: 1,
      desiredCapacity: 1,
      vpcZoneIdentifiers: args.subnetIds,
      launchTemplate: {
        id: launchTemplate.id,
        version: launchTemplate.latestVersion.apply(String),
      },
      targetGroupArns: [args.targetGroupArn],
      // EC2 status checks and the load balancer's /healthz: either failing replaces it.
      healthCheckType: "ELB",
      healthCheckGracePeriod: SCHEDULER_HEALTH_GRACE_SECONDS,
      // A new template version (image, settings in user data) replaces the instance. The old
      // one goes first (a group of one has no room for two); the API answers 503 meanwhile.
      instanceRefresh: {
        strategy: "Rolling",
        preferences: { minHealthyPercentage: 0, maxHealthyPercentage: 100 },
      },
      tags: Object.entries(instanceTags).map(([key, value]) => ({
        key,
        value,
        propagateAtLaunch: false,
      })),
    },
    { parent },
  );
  return { launchTemplate, group };
}
