/**
 * Spot warnings as a queue: an EventBridge rule sends every EC2 spot interruption warning and
 * rebalance recommendation in the account and region to an SQS queue the scheduler consumes
 * (`SHARDFLEET_SPOT_EVENTS_QUEUE_URL`). It is the scheduler's second signal beside the workers'
 * own metadata-service watch, one that does not depend on the worker being alive to pass it
 * on. Events name instances, not tags, so the scheduler keeps those of its own fleet.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

export interface SpotEventsArgs {
  /** Tags for every taggable child. */
  readonly tags: Record<string, string>;
}

/** The EventBridge detail types the rule matches, all with source `aws.ec2`. */
const SPOT_EVENT_DETAIL_TYPES = [
  "EC2 Spot Instance Interruption Warning",
  "EC2 Instance Rebalance Recommendation",
] as const;

/** A warning comes two minutes before the reclaim; one a day old is about a gone instance. */
const RETENTION_SECONDS = 24 * 3600;
/** Handling an event takes moments; one received by a scheduler that then died is back soon. */
const VISIBILITY_TIMEOUT_SECONDS = 30;
const LONG_POLL_SECONDS = 20;

export class SpotEventsComponent extends pulumi.ComponentResource {
  /** For `SHARDFLEET_SPOT_EVENTS_QUEUE_URL`. */
  public readonly queueUrl: pulumi.Output<string>;
  public readonly queueArn: pulumi.Output<string>;

  constructor(name: string, args: SpotEventsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("shardfleet:events:SpotEvents", name, {}, opts);
    const parent = { parent: this };

    const queue = new aws.sqs.Queue(
      `${name}-spot-events`,
      {
        // SQS-managed keys: EventBridge cannot send to a queue under the AWS-managed KMS key
        // (aws/sqs), whose key policy cannot be changed to let it encrypt.
        sqsManagedSseEnabled: true,
        messageRetentionSeconds: RETENTION_SECONDS,
        visibilityTimeoutSeconds: VISIBILITY_TIMEOUT_SECONDS,
        receiveWaitTimeSeconds: LONG_POLL_SECONDS,
        tags: args.tags,
      },
      parent,
    );

    const rule = new aws.cloudwatch.EventRule(
      `${name}-spot-events`,
      {
        description: "shardfleet: EC2 spot interruption warnings and rebalance recommendations",
        eventPattern: JSON.stringify({
          source: ["aws.ec2"],
          "detail-type": [...SPOT_EVENT_DETAIL_TYPES],
        }),
        tags: args.tags,
      },
      parent,
    );

    const policy = new aws.sqs.QueuePolicy(
      `${name}-spot-events`,
      {
        queueUrl: queue.url,
        policy: pulumi.jsonStringify({
          Version: "2012-10-17",
          Statement: [
            {
              Sid: "EventBridgeRuleOnly",
              Effect: "Allow",
              Principal: { Service: "events.amazonaws.com" },
              Action: "sqs:SendMessage",
              Resource: queue.arn,
              Condition: { ArnEquals: { "aws:SourceArn": rule.arn } },
            },
          ],
        }),
      },
      parent,
    );

    new aws.cloudwatch.EventTarget(
      `${name}-spot-events`,
      { rule: rule.name, arn: queue.arn },
      // Without the policy in place, EventBridge's first deliveries would be refused.
      { parent: this, dependsOn: [policy] },
    );

    this.queueUrl = queue.url;
    this.queueArn = queue.arn;
    this.registerOutputs({ queueUrl: this.queueUrl, queueArn: this.queueArn });
  }
}
