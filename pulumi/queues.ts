/**
 * The queues: one message per shard on the work queue (spot workers), re-published stragglers
 * on the straggler queue (on-demand workers poll it first), and one dead-letter queue that
 * both redrive to once a shard has failed `maxReceiveCount` times.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

export interface QueuesArgs {
  /** How long a received message stays invisible; workers extend it with a heartbeat. */
  readonly visibilityTimeoutSeconds: number;
  /** Receives of one message before SQS moves it to the dead-letter queue. */
  readonly maxReceiveCount: number;
  /** Tags for every taggable child. */
  readonly tags: Record<string, string>;
}

/** The longest wait SQS allows; fewer empty receives, less cost, same latency. */
const LONG_POLL_SECONDS = 20;
/**
 * A dead-lettered standard-queue message keeps its original enqueue time, so the DLQ must keep
 * messages longer than the source queues or a failed shard could expire before it is seen.
 */
const SOURCE_RETENTION_SECONDS = 4 * 24 * 3600;
const DLQ_RETENTION_SECONDS = 14 * 24 * 3600;

export class QueuesComponent extends pulumi.ComponentResource {
  /** For `SHARDFLEET_WORK_QUEUE_URL`. */
  public readonly workQueueUrl: pulumi.Output<string>;
  public readonly workQueueArn: pulumi.Output<string>;
  /** For `SHARDFLEET_STRAGGLER_QUEUE_URL`. */
  public readonly stragglerQueueUrl: pulumi.Output<string>;
  public readonly stragglerQueueArn: pulumi.Output<string>;
  /** For `SHARDFLEET_DLQ_URL`. */
  public readonly dlqUrl: pulumi.Output<string>;
  public readonly dlqArn: pulumi.Output<string>;

  constructor(name: string, args: QueuesArgs, opts?: pulumi.ComponentResourceOptions) {
    super("shardfleet:queues:Queues", name, {}, opts);
    const parent = { parent: this };

    const common = {
      visibilityTimeoutSeconds: args.visibilityTimeoutSeconds,
      receiveWaitTimeSeconds: LONG_POLL_SECONDS,
      sqsManagedSseEnabled: true,
      tags: args.tags,
    };

    const dlq = new aws.sqs.Queue(
      `${name}-dlq`,
      { ...common, messageRetentionSeconds: DLQ_RETENTION_SECONDS },
      parent,
    );

    const redrivePolicy = pulumi.jsonStringify({
      deadLetterTargetArn: dlq.arn,
      maxReceiveCount: args.maxReceiveCount,
    });
    const source = { ...common, messageRetentionSeconds: SOURCE_RETENTION_SECONDS, redrivePolicy };

    const work = new aws.sqs.Queue(`${name}-work`, source, parent);
    const straggler = new aws.sqs.Queue(`${name}-straggler`, source, parent);

    this.workQueueUrl = work.url;
    this.workQueueArn = work.arn;
    this.stragglerQueueUrl = straggler.url;
    this.stragglerQueueArn = straggler.arn;
    this.dlqUrl = dlq.url;
    this.dlqArn = dlq.arn;
    this.registerOutputs({
      workQueueUrl: this.workQueueUrl,
      stragglerQueueUrl: this.stragglerQueueUrl,
      dlqUrl: this.dlqUrl,
      dlqArn: this.dlqArn,
    });
  }
}
