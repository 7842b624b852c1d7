/**
 * The identity worker instances run as: a role that EC2 assumes, its instance profile, and one
 * inline policy that reaches the three queues and the `operations/` objects of one bucket,
 * with the actions a worker needs and nothing else.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { OPERATIONS_PREFIX } from "../src/shared/keys.ts";

export interface WorkerIdentityArgs {
  /** ARN of the bucket that holds the operations. */
  readonly bucketArn: pulumi.Input<string>;
  /** ARNs of the work, straggler and dead-letter queues. */
  readonly queueArns: pulumi.Input<string>[];
  /** Tags for every taggable child. */
  readonly tags: Record<string, string>;
}

/** Receive, heartbeat, delete, re-publish (stragglers) and read the queue depth. */
export const WORKER_QUEUE_ACTIONS = [
  "sqs:ReceiveMessage",
  "sqs:DeleteMessage",
  "sqs:ChangeMessageVisibility",
  "sqs:SendMessage",
  "sqs:GetQueueAttributes",
] as const;

/** Shard slices and checkpoints in, chunks, checkpoints and commit markers out. */
export const WORKER_OBJECT_ACTIONS = [
  "s3:GetObject",
  "s3:PutObject",
  "s3:AbortMultipartUpload",
] as const;

export class WorkerIdentityComponent extends pulumi.ComponentResource {
  public readonly roleArn: pulumi.Output<string>;
  public readonly roleName: pulumi.Output<string>;
  /** What a launch template names as the instances' IAM instance profile. */
  public readonly instanceProfileName: pulumi.Output<string>;
  public readonly instanceProfileArn: pulumi.Output<string>;

  constructor(name: string, args: WorkerIdentityArgs, opts?: pulumi.ComponentResourceOptions) {
    super("shardfleet:iam:WorkerIdentity", name, {}, opts);
    const parent = { parent: this };

    const role = new aws.iam.Role(
      `${name}-role`,
      {
        description: "shardfleet worker instances",
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
        tags: args.tags,
      },
      parent,
    );

    new aws.iam.RolePolicy(
      `${name}-policy`,
      {
        role: role.id,
        policy: pulumi.jsonStringify({
          Version: "2012-10-17",
          Statement: [
            {
              Sid: "ShardQueues",
              Effect: "Allow",
              Action: [...WORKER_QUEUE_ACTIONS],
              Resource: args.queueArns,
            },
            {
              // ListBucket is what makes a GET of a missing key answer 404 rather than 403, so
              // "no checkpoint yet" reads as NoSuchKey. No s3:prefix condition: that check is
              // made for a GET, whose request has no prefix to match.
              Sid: "ListOperations",
              Effect: "Allow",
              Action: "s3:ListBucket",
              Resource: args.bucketArn,
            },
            {
              Sid: "OperationObjects",
              Effect: "Allow",
              Action: [...WORKER_OBJECT_ACTIONS],
              Resource: pulumi.interpolate`${args.bucketArn}/${OPERATIONS_PREFIX}*`,
            },
          ],
        }),
      },
      parent,
    );

    const profile = new aws.iam.InstanceProfile(
      `${name}-profile`,
      { role: role.name, tags: args.tags },
      parent,
    );

    this.roleArn = role.arn;
    this.roleName = role.name;
    this.instanceProfileName = profile.name;
    this.instanceProfileArn = profile.arn;
    this.registerOutputs({
      roleArn: this.roleArn,
      instanceProfileName: this.instanceProfileName,
    });
  }
}
