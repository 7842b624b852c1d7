/**
 * The shard queue over SQS: batched sends (10 a call, the SQS maximum, failed entries retried),
 * long-poll receives, deletes and visibility changes. Messages are schema-checked by the caller
 * that consumes them (the worker), because a bad one must go to the DLQ, not crash a loop.
 */
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import { RetryableError } from "./errors.ts";
import { type ShardMessage, shardMessageSchema } from "./schemas/shard.ts";

export const SQS_BATCH_MAX = 10;

export interface ReceivedMessage {
  messageId: string;
  receiptHandle: string;
  body: string;
  receiveCount: number;
}

/** What a queue holds, as SQS counts it, and when the queue itself was created. */
export interface QueueStats {
  /**
   * Messages in the queue: visible, in flight (received, or released with a delay) and delayed.
   * Approximate on SQS (eventually consistent); the local server counts a message whose
   * visibility lapsed as in flight until the next receive, so it errs high, never low.
   */
  messages: number;
  /** When the queue was created (ms): a queue created again has lost every earlier message. */
  createdAtMs: number;
}

export class ShardQueue {
  readonly #sqs: SQSClient;

  constructor(deps: { sqs: SQSClient }) {
    this.#sqs = deps.sqs;
  }

  /** Sends one message per shard, 10 a call; entries SQS refuses are retried up to 5 times. */
  async sendShards(queueUrl: string, shards: ShardMessage[], signal?: AbortSignal): Promise<void> {
    for (let i = 0; i < shards.length; i += SQS_BATCH_MAX) {
      let entries = shards.slice(i, i + SQS_BATCH_MAX).map((m, j) => ({
        Id: String(j),
        MessageBody: JSON.stringify(shardMessageSchema.parse(m)),
      }));
      for (let attempt = 0; entries.length > 0; attempt++) {
        if (attempt === 5) {
          throw new RetryableError(`SQS refused ${entries.length} messages after 5 attempts`);
        }
        const out = await this.#sqs.send(
          new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: entries }),
          { abortSignal: signal },
        );
        const failed = new Set((out.Failed ?? []).map((f) => f.Id));
        entries = entries.filter((e) => failed.has(e.Id));
      }
    }
  }

  /** Sends one raw body (used to move an unparseable message to the DLQ). */
  async sendRaw(queueUrl: string, body: string, signal?: AbortSignal): Promise<void> {
    await this.#sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: body }), {
      abortSignal: signal,
    });
  }

  /** Long-polls for up to `max` messages. */
  async receive(
    queueUrl: string,
    options: { max: number; waitSeconds: number; visibilityTimeout: number; signal?: AbortSignal },
  ): Promise<ReceivedMessage[]> {
    const out = await this.#sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: Math.min(options.max, SQS_BATCH_MAX),
        WaitTimeSeconds: options.waitSeconds,
        VisibilityTimeout: options.visibilityTimeout,
        MessageSystemAttributeNames: ["ApproximateReceiveCount"],
      }),
      { abortSignal: options.signal },
    );
    return (out.Messages ?? []).map(toReceived);
  }

  async delete(queueUrl: string, receiptHandle: string, signal?: AbortSignal): Promise<void> {
    await this.#sqs.send(
      new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: receiptHandle }),
      {
        abortSignal: signal,
      },
    );
  }

  /** The queue's message counts and creation time (GetQueueAttributes). */
  async stats(queueUrl: string, signal?: AbortSignal): Promise<QueueStats> {
    const out = await this.#sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: queueUrl,
        AttributeNames: [
          "ApproximateNumberOfMessages",
          "ApproximateNumberOfMessagesNotVisible",
          "ApproximateNumberOfMessagesDelayed",
          "CreatedTimestamp",
        ],
      }),
      { abortSignal: signal },
    );
    const a = out.Attributes ?? {};
    const count = (v: string | undefined) => Number(v ?? "0") || 0;
    return {
      messages:
        count(a.ApproximateNumberOfMessages) +
        count(a.ApproximateNumberOfMessagesNotVisible) +
        count(a.ApproximateNumberOfMessagesDelayed),
      // SQS gives epoch seconds.
      createdAtMs: count(a.CreatedTimestamp) * 1000,
    };
  }

  /** Extends (or, with 0, ends) a message's invisibility. */
  async changeVisibility(
    queueUrl: string,
    receiptHandle: string,
    seconds: number,
    signal?: AbortSignal,
  ): Promise<void> {
    await this.#sqs.send(
      new ChangeMessageVisibilityCommand({
        QueueUrl: queueUrl,
        ReceiptHandle: receiptHandle,
        VisibilityTimeout: seconds,
      }),
      { abortSignal: signal },
    );
  }
}

function toReceived(m: Message): ReceivedMessage {
  return {
    messageId: m.MessageId ?? "",
    receiptHandle: m.ReceiptHandle ?? "",
    body: m.Body ?? "",
    receiveCount: Number(m.Attributes?.ApproximateReceiveCount ?? "1"),
  };
}
