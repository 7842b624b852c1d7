/**
 * Creates what the system needs on a fresh SQS/S3 endpoint, through the SDK like any client:
 * the bucket, the work and straggler queues, the DLQ they both redrive to, and the spot events
 * queue (where, on AWS, an EventBridge rule delivers EC2 spot interruption warnings and rebalance
 * recommendations; the local stack sends the same events there itself).
 */
import { CreateBucketCommand, type S3Client } from "@aws-sdk/client-s3";
import { CreateQueueCommand, GetQueueAttributesCommand, type SQSClient } from "@aws-sdk/client-sqs";

export interface ResourceNames {
  /** @default "shardfleet-local" */
  bucket?: string;
  /** Queue name prefix. @default "shardfleet" */
  prefix?: string;
}

export interface ResourceOptions {
  /** Visibility timeout of the work and straggler queues. @default 60 */
  visibilityTimeoutSeconds?: number;
  /** Deliveries before SQS moves a message to the DLQ (the safety net for crash loops). @default 10 */
  maxReceiveCount?: number;
}

export interface ProvisionedResources {
  bucket: string;
  queues: { work: string; straggler: string; dlq: string; spotEvents: string };
}

export async function provisionResources(
  deps: { sqs: SQSClient; s3: S3Client },
  names: ResourceNames = {},
  options: ResourceOptions = {},
): Promise<ProvisionedResources> {
  const bucket = names.bucket ?? "shardfleet-local";
  const prefix = names.prefix ?? "shardfleet";
  const visibility = String(options.visibilityTimeoutSeconds ?? 60);
  await deps.s3.send(new CreateBucketCommand({ Bucket: bucket }));

  const dlq = await deps.sqs.send(
    new CreateQueueCommand({
      QueueName: `${prefix}-dlq`,
      Attributes: { MessageRetentionPeriod: String(14 * 24 * 3600) },
    }),
  );
  const dlqAttrs = await deps.sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: dlq.QueueUrl, AttributeNames: ["QueueArn"] }),
  );
  const redrivePolicy = JSON.stringify({
    deadLetterTargetArn: dlqAttrs.Attributes?.QueueArn,
    maxReceiveCount: String(options.maxReceiveCount ?? 10),
  });
  const queue = async (name: string) => {
    const out = await deps.sqs.send(
      new CreateQueueCommand({
        QueueName: `${prefix}-${name}`,
        Attributes: { VisibilityTimeout: visibility, RedrivePolicy: redrivePolicy },
      }),
    );
    return out.QueueUrl!;
  };
  // Consumed by the scheduler only; a message it cannot use is deleted, so no redrive.
  const spotEvents = await deps.sqs.send(
    new CreateQueueCommand({
      QueueName: `${prefix}-spot-events`,
      Attributes: { VisibilityTimeout: "30" },
    }),
  );
  return {
    bucket,
    queues: {
      work: await queue("work"),
      straggler: await queue("straggler"),
      dlq: dlq.QueueUrl!,
      spotEvents: spotEvents.QueueUrl!,
    },
  };
}
