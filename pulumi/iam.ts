/**
 * The identities instances run as. Workers: a role that EC2 assumes, its instance profile, and
 * one inline policy that reaches the three queues, reads the `operations/` and `scratch/`
 * objects of one bucket and writes only scratch objects, attempt records and commit markers
 * (never a manifest, fleet record, output or cost report), and writes log streams in
 * the stack's log group (the image's optional log shipping). The scheduler: the same plus
 * launching and terminating its own fleet's workers, reading the spot-events queue and, with
 * an API token, reading that one parameter (see SchedulerIdentityComponent).
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { FLEET_TAGS } from "../src/shared/capacity.ts";
import {
  keys,
  OPERATIONS_PREFIX,
  SCRATCH_PREFIX,
  WORKER_WRITABLE_PATTERNS,
} from "../src/shared/keys.ts";

export interface WorkerIdentityArgs {
  /** ARN of the bucket that holds the operations. */
  readonly bucketArn: pulumi.Input<string>;
  /** ARNs of the work, straggler and dead-letter queues. */
  readonly queueArns: pulumi.Input<string>[];
  /** ARN of the stack's log group, as @pulumi/aws v7 reports it (no `:*` suffix). */
  readonly logGroupArn: pulumi.Input<string>;
  /** Tags for every taggable child. */
  readonly tags: Record<string, string>;
}

/**
 * What both roles do on the three shard queues: the worker receives, heartbeats, deletes,
 * re-publishes stragglers and reads the depth; the scheduler publishes shards, reads the DLQ
 * and reads the depth.
 */
const SHARD_QUEUE_ACTIONS = [
  "sqs:ReceiveMessage",
  "sqs:DeleteMessage",
  "sqs:ChangeMessageVisibility",
  "sqs:SendMessage",
  "sqs:GetQueueAttributes",
] as const;

/**
 * A worker reads manifests, commit markers and attempts (`operations/`) and its shard slices,
 * checkpoints and chunks (`scratch/`); it writes only what WORKER_WRITABLE_PATTERNS names:
 * scratch objects, attempt records and commit markers — never a manifest, fleet record, output
 * or cost report.
 */
function workerObjects(bucketArn: pulumi.Input<string>) {
  const under = (pattern: string) => pulumi.interpolate`${bucketArn}/${pattern}`;
  return [
    {
      Sid: "ReadOperationObjects",
      Effect: "Allow",
      Action: "s3:GetObject",
      Resource: [OPERATIONS_PREFIX, SCRATCH_PREFIX].map((prefix) => under(`${prefix}*`)),
    },
    {
      // Chunks may go up in parts: an interrupted upload is aborted (scratch/ only).
      Sid: "WriteScratch",
      Effect: "Allow",
      Action: ["s3:PutObject", "s3:AbortMultipartUpload"],
      Resource: under(WORKER_WRITABLE_PATTERNS.scratch),
    },
    {
      Sid: "WriteShardRecords",
      Effect: "Allow",
      Action: "s3:PutObject",
      Resource: [WORKER_WRITABLE_PATTERNS.attempts, WORKER_WRITABLE_PATTERNS.done].map(under),
    },
  ];
}

/**
 * The statements both roles need for operation data: SHARD_QUEUE_ACTIONS on the three queues
 * and ListBucket on the bucket.
 */
function queueAndBucketAccess(args: {
  bucketArn: pulumi.Input<string>;
  queueArns: pulumi.Input<pulumi.Input<string>[]>;
}) {
  return [
    {
      Sid: "ShardQueues",
      Effect: "Allow",
      Action: [...SHARD_QUEUE_ACTIONS],
      Resource: args.queueArns,
    },
    {
      // ListBucket is what makes a GET of a missing key answer 404 rather than 403, so
      // "no checkpoint yet" reads as NoSuchKey. No s3:prefix condition: that check is made for
      // a GET, whose request has no prefix to match.
      Sid: "ListBucket",
      Effect: "Allow",
      Action: "s3:ListBucket",
      Resource: args.bucketArn,
    },
  ];
}

/**
 * `objectActions` under the two prefixes an operation writes (its records under `operations/`,
 * its temporary objects under `scratch/`) only: the scheduler's access.
 */
function operationObjects(bucketArn: pulumi.Input<string>, objectActions: readonly string[]) {
  return {
    Sid: "OperationObjects",
    Effect: "Allow",
    Action: [...objectActions],
    Resource: [OPERATIONS_PREFIX, SCRATCH_PREFIX].map(
      (prefix) => pulumi.interpolate`${bucketArn}/${prefix}*`,
    ),
  };
}

/**
 * The scheduler lease record only (src/scheduler/lease/): read it, and write it conditionally
 * (S3 checks If-Match / If-None-Match under s3:PutObject itself).
 */
function schedulerLease(bucketArn: pulumi.Input<string>) {
  return {
    Sid: "SchedulerLease",
    Effect: "Allow",
    Action: ["s3:GetObject", "s3:PutObject"],
    Resource: pulumi.interpolate`${bucketArn}/${keys.schedulerLease()}`,
  };
}

/** What Fluent Bit's cloudwatch_logs output needs with `auto_create_group false`. */
const LOG_SHIPPING_ACTIONS = ["logs:CreateLogStream", "logs:PutLogEvents"] as const;

/**
 * Create and write log streams in the stack's log group only. The Service Authorization
 * Reference authorizes CreateLogStream on the log-group resource
 * (`arn:…:log-group:<name>`) and PutLogEvents on the log-stream resource
 * (`arn:…:log-group:<name>:log-stream:<stream>`). @pulumi/aws v7's LogGroup.arn has the API's
 * `:*` suffix removed, so the group ARN covers the first and `<arn>:*` the streams (and the
 * `:*` form of the group ARN). Group names cannot contain ":", so neither matches another group.
 */
function shipLogs(logGroupArn: pulumi.Input<string>) {
  return {
    Sid: "ShipLogs",
    Effect: "Allow",
    Action: [...LOG_SHIPPING_ACTIONS],
    Resource: [logGroupArn, pulumi.interpolate`${logGroupArn}:*`],
  };
}

/**
 * A role that only EC2 instances can assume, its one inline policy of `statements`, and the
 * instance profile that carries it.
 */
function ec2InstanceRole(
  name: string,
  description: string,
  statements: pulumi.Input<unknown>[],
  tags: Record<string, string>,
  parent: pulumi.Resource,
) {
  const role = new aws.iam.Role(
    `${name}-role`,
    {
      description,
      assumeRolePolicy: JSON.stringify({
        Version: "2012-10-17",
        Statement: [
          {
            Effect: "Allow",
            Principal: { Service: "ec2.amazonaws.com" },
            Action: "sts:AssumeRole",
          },
        ],
      }),
      tags,
    },
    { parent },
  );
  const profile = new aws.iam.InstanceProfile(
    `${name}-profile`,
    { role: role.name, tags },
    { parent },
  );
  new aws.iam.RolePolicy(
    `${name}-policy`,
    {
      role: role.id,
      policy: pulumi.jsonStringify({ Version: "2012-10-17", Statement: statements }),
    },
    { parent },
  );
  return { role, profile };
}

export class WorkerIdentityComponent extends pulumi.ComponentResource {
  public readonly roleArn: pulumi.Output<string>;
  /** What a launch template names as the instances' IAM instance profile. */
  public readonly instanceProfileName: pulumi.Output<string>;

  constructor(name: string, args: WorkerIdentityArgs, opts?: pulumi.ComponentResourceOptions) {
    super("shardfleet:iam:WorkerIdentity", name, {}, opts);

    const { role, profile } = ec2InstanceRole(
      name,
      "shardfleet worker instances",
      [...queueAndBucketAccess(args), ...workerObjects(args.bucketArn), shipLogs(args.logGroupArn)],
      args.tags,
      this,
    );

    this.roleArn = role.arn;
    this.instanceProfileName = profile.name;
    this.registerOutputs({
      roleArn: this.roleArn,
      instanceProfileName: this.instanceProfileName,
    });
  }
}

export interface SchedulerIdentityArgs {
  /** ARN of the bucket that holds the operations. */
  readonly bucketArn: pulumi.Input<string>;
  /** The fleet name the scheduler tags its instances with: the bucket's name (src/scheduler/main.ts). */
  readonly fleetName: pulumi.Input<string>;
  /** ARNs of the work, straggler and dead-letter queues. */
  readonly queueArns: pulumi.Input<string>[];
  /** The queue EventBridge fills with spot interruption warnings and rebalance recommendations. */
  readonly spotEventsQueueArn: pulumi.Input<string>;
  /** The only role the scheduler may hand to instances. */
  readonly workerRoleArn: pulumi.Input<string>;
  /** The worker launch template, its image, subnets and security group. */
  readonly launchTemplateArn: pulumi.Input<string>;
  readonly amiId: string;
  readonly subnetIds: pulumi.Input<string[]>;
  readonly workerSecurityGroupArn: pulumi.Input<string>;
  readonly region: pulumi.Input<string>;
  readonly accountId: pulumi.Input<string>;
  /** The region's partition (`aws`, `aws-cn`, `aws-us-gov`), the second field of every ARN. */
  readonly partition: pulumi.Input<string>;
  /** ARN of the stack's log group, as @pulumi/aws v7 reports it (no `:*` suffix). */
  readonly logGroupArn: pulumi.Input<string>;
  /** The SSM parameter holding the API's tokens; absent: the API has no token to read. */
  readonly apiTokenParameterArn?: pulumi.Input<string>;
  /** Tags for every taggable child. */
  readonly tags: Record<string, string>;
}

/**
 * EC2 offers no resource-level permission or condition for these: they are the only actions
 * granted on `Resource: "*"` anywhere in the stack. All are read-only.
 */
const UNSCOPED_DESCRIBE_ACTIONS = [
  "ec2:DescribeInstances",
  "ec2:DescribeSpotPriceHistory",
] as const;

/** Consume the spot-events queue: it only reads and deletes, EventBridge sends. */
const SPOT_EVENTS_QUEUE_ACTIONS = [
  "sqs:ReceiveMessage",
  "sqs:DeleteMessage",
  "sqs:ChangeMessageVisibility",
  "sqs:GetQueueAttributes",
] as const;

/** Inputs and manifests in, slices out, chunks merged, operations deleted. */
const SCHEDULER_OBJECT_ACTIONS = [
  "s3:GetObject",
  "s3:PutObject",
  "s3:DeleteObject",
  "s3:AbortMultipartUpload",
] as const;

/**
 * Read (and decrypt) the API token parameter, once at start. No kms:Decrypt: the parameter is
 * under the AWS-managed aws/ssm key, whose key policy already lets every principal of the
 * account decrypt through SSM ("Restricting decryption of SecureString parameter values",
 * Systems Manager user guide); a customer managed key would need it here.
 */
function readApiToken(parameterArn: pulumi.Input<string>) {
  return {
    Sid: "ReadApiToken",
    Effect: "Allow",
    Action: "ssm:GetParameter",
    Resource: parameterArn,
  };
}

/**
 * The scheduler's identity: it may launch instances only from the worker launch template and
 * only when the request tags them with its fleet, terminate only instances carrying that tag,
 * pass only the worker role, use the bucket and shard queues, consume the spot-events queue,
 * read the API token parameter (when there is one), and write log streams in the stack's log
 * group.
 */
export class SchedulerIdentityComponent extends pulumi.ComponentResource {
  public readonly roleArn: pulumi.Output<string>;
  public readonly instanceProfileName: pulumi.Output<string>;

  constructor(name: string, args: SchedulerIdentityArgs, opts?: pulumi.ComponentResourceOptions) {
    super("shardfleet:iam:SchedulerIdentity", name, {}, opts);
    const ec2Arn = (resource: string) =>
      pulumi.interpolate`arn:${args.partition}:ec2:${args.region}:${args.accountId}:${resource}`;
    // Images and snapshots are named without an account.
    const ec2RegionArn = (resource: pulumi.Input<string>) =>
      pulumi.interpolate`arn:${args.partition}:ec2:${args.region}::${resource}`;
    const fleetTag = `aws:RequestTag/${FLEET_TAGS.fleet}`;
    const launch = ["ec2:CreateFleet", "ec2:RunInstances"];
    const subnetArns = pulumi
      .all([args.partition, args.region, args.accountId, args.subnetIds])
      .apply(([partition, region, account, ids]) =>
        ids.map((id) => `arn:${partition}:ec2:${region}:${account}:subnet/${id}`),
      );

    const { role, profile } = ec2InstanceRole(
      name,
      "shardfleet scheduler instance",
      [
        {
          // The fleet and its instances exist only if the request tags them with this fleet.
          Sid: "LaunchTaggedFleetsAndInstances",
          Effect: "Allow",
          Action: launch,
          Resource: [ec2Arn("fleet/*"), ec2Arn("instance/*")],
          Condition: { StringEquals: { [fleetTag]: args.fleetName } },
        },
        {
          // What a launch uses or creates without tags of its own: only the worker's
          // template, image (and the snapshot its root volume is made from), subnets and
          // security group, and new volumes, interfaces and, for spot capacity, the spot
          // instance requests an instant fleet opens (without these a spot launch is
          // refused; aws/karpenter-provider-aws#5402).
          Sid: "LaunchFromWorkerTemplate",
          Effect: "Allow",
          Action: launch,
          Resource: pulumi
            .all([
              args.launchTemplateArn,
              args.workerSecurityGroupArn,
              ec2RegionArn(pulumi.interpolate`image/${args.amiId}`),
              ec2RegionArn("snapshot/*"),
              ec2Arn("volume/*"),
              ec2Arn("network-interface/*"),
              ec2Arn("spot-instances-request/*"),
              subnetArns,
            ])
            .apply(([template, sg, image, snapshots, volumes, interfaces, spot, subnets]) => [
              template,
              sg,
              image,
              snapshots,
              volumes,
              interfaces,
              spot,
              ...subnets,
            ]),
        },
        {
          Sid: "TagOnlyAtLaunch",
          Effect: "Allow",
          Action: "ec2:CreateTags",
          Resource: [ec2Arn("fleet/*"), ec2Arn("instance/*"), ec2Arn("volume/*")],
          Condition: { StringEquals: { "ec2:CreateAction": launch.map((a) => a.slice(4)) } },
        },
        {
          Sid: "TerminateOwnFleet",
          Effect: "Allow",
          Action: "ec2:TerminateInstances",
          Resource: ec2Arn("instance/*"),
          Condition: {
            StringEquals: { [`ec2:ResourceTag/${FLEET_TAGS.fleet}`]: args.fleetName },
          },
        },
        {
          Sid: "PassWorkerRoleToEc2",
          Effect: "Allow",
          Action: "iam:PassRole",
          Resource: args.workerRoleArn,
          Condition: { StringEquals: { "iam:PassedToService": "ec2.amazonaws.com" } },
        },
        {
          // The documented exception: these describe calls accept only "*".
          Sid: "DescribeUnscoped",
          Effect: "Allow",
          Action: [...UNSCOPED_DESCRIBE_ACTIONS],
          Resource: "*",
        },
        {
          Sid: "ConsumeSpotEvents",
          Effect: "Allow",
          Action: [...SPOT_EVENTS_QUEUE_ACTIONS],
          Resource: args.spotEventsQueueArn,
        },
        ...queueAndBucketAccess(args),
        operationObjects(args.bucketArn, SCHEDULER_OBJECT_ACTIONS),
        schedulerLease(args.bucketArn),
        shipLogs(args.logGroupArn),
        ...(args.apiTokenParameterArn === undefined
          ? []
          : [readApiToken(args.apiTokenParameterArn)]),
      ],
      args.tags,
      this,
    );

    this.roleArn = role.arn;
    this.instanceProfileName = profile.name;
    this.registerOutputs({
      roleArn: this.roleArn,
      instanceProfileName: this.instanceProfileName,
    });
  }
}
