/**
 * EC2 spot events for the local stack, built as EventBridge delivers them to an SQS target on
 * AWS (the message body is the event JSON; shape: src/shared/schemas/spot-events.ts), so the
 * scheduler consumes local and AWS events with the same code.
 */
import { randomUUID } from "node:crypto";
import { SendMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import {
  REBALANCE_RECOMMENDATION,
  SPOT_INTERRUPTION_WARNING,
  type SpotAction,
  type SpotEvent,
  type SpotSignal,
  spotEventSchema,
} from "../shared/schemas/spot-events.ts";

/** The account id the local stack's ARNs carry. */
export const LOCAL_ACCOUNT = "000000000000";

export interface SpotEventInput {
  kind: SpotSignal["kind"];
  instanceId: string;
  region: string;
  /** @default LOCAL_ACCOUNT */
  account?: string;
  /** When EC2 emits it. @default now */
  time?: Date;
  /** What happens to the instance (warnings only). @default "terminate" */
  action?: SpotAction;
}

/** The event EC2 emits, as EventBridge delivers it (seconds-precision time, an instance ARN). */
export function ec2SpotEvent(input: SpotEventInput): SpotEvent {
  const account = input.account ?? LOCAL_ACCOUNT;
  const envelope = {
    version: "0",
    id: randomUUID(),
    source: "aws.ec2" as const,
    account,
    time: (input.time ?? new Date()).toISOString().replace(/\.\d{3}Z$/, "Z"),
    region: input.region,
    resources: [`arn:aws:ec2:${input.region}:${account}:instance/${input.instanceId}`],
  };
  return input.kind === "interruption-warning"
    ? {
        ...envelope,
        "detail-type": SPOT_INTERRUPTION_WARNING,
        detail: { "instance-id": input.instanceId, "instance-action": input.action ?? "terminate" },
      }
    : {
        ...envelope,
        "detail-type": REBALANCE_RECOMMENDATION,
        detail: { "instance-id": input.instanceId },
      };
}

/** Sends the event to the spot events queue, as the EventBridge rule's SQS target would. */
export async function sendSpotEvent(
  sqs: SQSClient,
  queueUrl: string,
  event: SpotEvent,
  signal?: AbortSignal,
): Promise<void> {
  await sqs.send(
    new SendMessageCommand({
      QueueUrl: queueUrl,
      MessageBody: JSON.stringify(spotEventSchema.parse(event)),
    }),
    { abortSignal: signal },
  );
}
