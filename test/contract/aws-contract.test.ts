/**
 * The SQS and S3 behaviour shardfleet relies on, stated once and run through the same SDK
 * clients the system uses. It runs against the local server by default and against real AWS with
 * `SHARDFLEET_CONTRACT_TARGET=aws` (see ./context.ts), so the local stack cannot drift from AWS
 * unnoticed. Timing assertions are protocol bounds only (a long poll waits, a hidden message stays
 * hidden), never performance.
 */
import { createHash, randomBytes } from "node:crypto";
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageBatchCommand,
  type Message,
  ReceiveMessageCommand,
  type ReceiveMessageCommandInput,
  SendMessageBatchCommand,
  SendMessageCommand,
} from "@aws-sdk/client-sqs";
import { Upload } from "@aws-sdk/lib-storage";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ContractContext, openContractContext } from "./context.ts";

let ctx: ContractContext;

beforeAll(async () => {
  ctx = await openContractContext();
});

afterAll(async () => {
  await ctx?.close();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function receive(
  queueUrl: string,
  input: Omit<ReceiveMessageCommandInput, "QueueUrl"> = {},
): Promise<Message[]> {
  const out = await ctx.sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, ...input }));
  return out.Messages ?? [];
}

/** Long-polls until one message arrives (AWS short polls may miss a message that exists). */
async function receiveOne(
  queueUrl: string,
  input: Omit<ReceiveMessageCommandInput, "QueueUrl"> = {},
): Promise<Message> {
  const [message] = await receive(queueUrl, { WaitTimeSeconds: 5, ...input });
  if (!message) throw new Error("expected a message within the long poll");
  return message;
}

/** Runs `fn` and returns the error it rejects with, failing if it resolves. */
async function rejectionOf(fn: () => Promise<unknown>): Promise<{
  name: string;
  $metadata?: { httpStatusCode?: number };
}> {
  try {
    await fn();
  } catch (err) {
    return err as { name: string; $metadata?: { httpStatusCode?: number } };
  }
  throw new Error("expected the call to fail");
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

async function getBody(key: string): Promise<Uint8Array> {
  const out = await ctx.s3.send(new GetObjectCommand({ Bucket: ctx.bucket, Key: key }));
  if (!out.Body) throw new Error(`GetObject ${key} returned no body`);
  return out.Body.transformToByteArray();
}

async function put(key: string, body: string | Uint8Array) {
  return ctx.s3.send(new PutObjectCommand({ Bucket: ctx.bucket, Key: key, Body: body }));
}

/** S3 lists keys in UTF-8 binary order. */
const utf8Order = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

describe("SQS", () => {
  it("a long poll on an empty queue waits for WaitTimeSeconds before returning empty", async () => {
    const q = await ctx.createQueue("longpoll-empty");
    const started = performance.now();
    const messages = await receive(q.url, { WaitTimeSeconds: 2 });
    const elapsed = performance.now() - started;
    expect(messages).toEqual([]);
    expect(elapsed).toBeGreaterThanOrEqual(1500);
    expect(elapsed).toBeLessThan(2000 + 8000);
  });

  it("a long poll wakes as soon as a message is sent", async () => {
    const q = await ctx.createQueue("longpoll-wake");
    const started = performance.now();
    const polling = receive(q.url, { WaitTimeSeconds: 10 });
    await sleep(300);
    await ctx.sqs.send(new SendMessageCommand({ QueueUrl: q.url, MessageBody: "wake" }));
    const messages = await polling;
    expect(messages.map((m) => m.Body)).toEqual(["wake"]);
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it("the visibility timeout hides a received message, then re-delivers it", async () => {
    const q = await ctx.createQueue("visibility");
    await ctx.sqs.send(new SendMessageCommand({ QueueUrl: q.url, MessageBody: "v" }));
    const first = await receiveOne(q.url, { VisibilityTimeout: 1 });
    const receivedAt = performance.now();
    expect(await receive(q.url, { WaitTimeSeconds: 0 })).toEqual([]);
    const again = await receiveOne(q.url);
    expect(again.MessageId).toBe(first.MessageId);
    expect(again.ReceiptHandle).not.toBe(first.ReceiptHandle);
    // Hidden for (about) the whole timeout, not re-delivered early.
    expect(performance.now() - receivedAt).toBeGreaterThanOrEqual(800);
  });

  it("ChangeMessageVisibility extends the timeout, and 0 makes the message visible at once", async () => {
    const q = await ctx.createQueue("change-visibility");
    await ctx.sqs.send(new SendMessageCommand({ QueueUrl: q.url, MessageBody: "cmv" }));
    const first = await receiveOne(q.url, { VisibilityTimeout: 1 });
    await ctx.sqs.send(
      new ChangeMessageVisibilityCommand({
        QueueUrl: q.url,
        ReceiptHandle: first.ReceiptHandle,
        VisibilityTimeout: 5,
      }),
    );
    await sleep(1500);
    // Past the original 1 s, still hidden by the 5 s extension.
    expect(await receive(q.url, { WaitTimeSeconds: 1 })).toEqual([]);

    await ctx.sqs.send(
      new ChangeMessageVisibilityCommand({
        QueueUrl: q.url,
        ReceiptHandle: first.ReceiptHandle,
        VisibilityTimeout: 0,
      }),
    );
    // The extension still had about 2.5 s to run, so a 1 s poll only sees it if 0 re-queued it.
    const [again] = await receive(q.url, { WaitTimeSeconds: 1 });
    expect(again?.MessageId).toBe(first.MessageId);
  });

  it("ApproximateReceiveCount counts every delivery", async () => {
    const q = await ctx.createQueue("receive-count");
    await ctx.sqs.send(new SendMessageCommand({ QueueUrl: q.url, MessageBody: "count" }));
    const counts: string[] = [];
    for (let i = 0; i < 3; i++) {
      const m = await receiveOne(q.url, {
        VisibilityTimeout: 30,
        MessageSystemAttributeNames: ["ApproximateReceiveCount"],
      });
      counts.push(m.Attributes?.ApproximateReceiveCount ?? "missing");
      await ctx.sqs.send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: q.url,
          ReceiptHandle: m.ReceiptHandle,
          VisibilityTimeout: 0,
        }),
      );
    }
    expect(counts).toEqual(["1", "2", "3"]);
  });

  it("a message received maxReceiveCount times moves to the dead-letter queue", async () => {
    const dlq = await ctx.createQueue("dlq");
    const q = await ctx.createQueue("redrive", {
      RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlq.arn, maxReceiveCount: 2 }),
    });
    await ctx.sqs.send(new SendMessageCommand({ QueueUrl: q.url, MessageBody: "poison" }));
    let messageId: string | undefined;
    for (let i = 0; i < 2; i++) {
      const m = await receiveOne(q.url, { VisibilityTimeout: 30 });
      messageId ??= m.MessageId;
      expect(m.MessageId).toBe(messageId);
      await ctx.sqs.send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: q.url,
          ReceiptHandle: m.ReceiptHandle,
          VisibilityTimeout: 0,
        }),
      );
    }
    // The third receive finds the count exhausted and moves the message instead of delivering it.
    expect(await receive(q.url, { WaitTimeSeconds: 1 })).toEqual([]);
    const dead = await receiveOne(dlq.url);
    expect(dead.MessageId).toBe(messageId);
    expect(dead.Body).toBe("poison");
  });

  it("SendMessageBatch and DeleteMessageBatch take 10 entries", async () => {
    const q = await ctx.createQueue("batch");
    const entries = Array.from({ length: 10 }, (_, i) => ({
      Id: `m${i}`,
      MessageBody: `body-${i}`,
    }));
    const sent = await ctx.sqs.send(
      new SendMessageBatchCommand({ QueueUrl: q.url, Entries: entries }),
    );
    expect(sent.Successful).toHaveLength(10);
    expect(sent.Failed ?? []).toEqual([]);

    const received = new Map<string, Message>();
    for (let attempt = 0; attempt < 10 && received.size < 10; attempt++) {
      for (const m of await receive(q.url, {
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 2,
        VisibilityTimeout: 60,
      })) {
        if (m.MessageId) received.set(m.MessageId, m);
      }
    }
    expect([...received.values()].map((m) => m.Body).sort()).toEqual(
      entries.map((e) => e.MessageBody).sort(),
    );

    const deleted = await ctx.sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: q.url,
        Entries: [...received.values()].map((m, i) => ({
          Id: `d${i}`,
          ReceiptHandle: m.ReceiptHandle,
        })),
      }),
    );
    expect(deleted.Successful).toHaveLength(10);
    expect(deleted.Failed ?? []).toEqual([]);
  });

  it("a batch of 11 entries is rejected with TooManyEntriesInBatchRequest", async () => {
    const q = await ctx.createQueue("batch-too-many");
    const sendError = await rejectionOf(() =>
      ctx.sqs.send(
        new SendMessageBatchCommand({
          QueueUrl: q.url,
          Entries: Array.from({ length: 11 }, (_, i) => ({ Id: `m${i}`, MessageBody: "x" })),
        }),
      ),
    );
    expect(sendError.name).toBe("TooManyEntriesInBatchRequest");

    const deleteError = await rejectionOf(() =>
      ctx.sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: q.url,
          Entries: Array.from({ length: 11 }, (_, i) => ({ Id: `d${i}`, ReceiptHandle: `h${i}` })),
        }),
      ),
    );
    expect(deleteError.name).toBe("TooManyEntriesInBatchRequest");
  });
});

describe("S3", () => {
  it("PutObject with If-None-Match: * fails with 412 when the key exists", async () => {
    const key = ctx.key("if-none-match");
    await ctx.s3.send(
      new PutObjectCommand({ Bucket: ctx.bucket, Key: key, Body: "first", IfNoneMatch: "*" }),
    );
    const err = await rejectionOf(() =>
      ctx.s3.send(
        new PutObjectCommand({ Bucket: ctx.bucket, Key: key, Body: "second", IfNoneMatch: "*" }),
      ),
    );
    expect(err.$metadata?.httpStatusCode).toBe(412);
    expect(err.name).toBe("PreconditionFailed");
    expect(Buffer.from(await getBody(key)).toString()).toBe("first");
  });

  it("PutObject with If-Match succeeds on the current ETag and fails with 412 on a stale one", async () => {
    const key = ctx.key("if-match");
    const v1 = await put(key, "v1");
    const v2 = await ctx.s3.send(
      new PutObjectCommand({ Bucket: ctx.bucket, Key: key, Body: "v2", IfMatch: v1.ETag }),
    );
    expect(v2.ETag).toBeDefined();
    expect(v2.ETag).not.toBe(v1.ETag);

    const err = await rejectionOf(() =>
      ctx.s3.send(
        new PutObjectCommand({ Bucket: ctx.bucket, Key: key, Body: "v3", IfMatch: v1.ETag }),
      ),
    );
    expect(err.$metadata?.httpStatusCode).toBe(412);
    expect(err.name).toBe("PreconditionFailed");
    expect(Buffer.from(await getBody(key)).toString()).toBe("v2");
  });

  it("of 20 racing If-None-Match: * writers to one key exactly one wins and its body is stored", async () => {
    const key = ctx.key("race");
    const bodies = Array.from({ length: 20 }, (_, i) => `writer-${i}`);
    const results = await Promise.allSettled(
      bodies.map((Body) =>
        ctx.s3.send(new PutObjectCommand({ Bucket: ctx.bucket, Key: key, Body, IfNoneMatch: "*" })),
      ),
    );
    const winners = bodies.filter((_, i) => results[i]?.status === "fulfilled");
    const loserStatuses = results.flatMap((r) =>
      r.status === "rejected"
        ? [(r.reason as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode]
        : [],
    );
    expect(winners).toHaveLength(1);
    // AWS may answer a loser that overlapped the winner with 409 ConditionalRequestConflict
    // (retry it to get the 412); the local server serialises writers, so every loser gets 412.
    const loserCodes = ctx.target === "aws" ? [409, 412] : [412];
    expect(loserStatuses).toHaveLength(19);
    for (const status of loserStatuses) expect(loserCodes).toContain(status);
    expect(Buffer.from(await getBody(key)).toString()).toBe(winners[0]);
  });

  it("a multipart Upload larger than one PUT reads back byte-identical", async () => {
    const key = ctx.key("multipart");
    const body = randomBytes(12 * 1024 * 1024 + 123);
    const upload = new Upload({
      client: ctx.s3,
      params: { Bucket: ctx.bucket, Key: key, Body: body, IfNoneMatch: "*" },
      partSize: 5 * 1024 * 1024,
      queueSize: 3,
    });
    await upload.done();
    const stored = await getBody(key);
    expect(stored.byteLength).toBe(body.byteLength);
    expect(sha256(stored)).toBe(sha256(body));
  });

  it("CompleteMultipartUpload with If-None-Match: * fails with 412 when the key exists", async () => {
    const key = ctx.key("multipart-exists");
    await put(key, "already committed");
    const { UploadId } = await ctx.s3.send(
      new CreateMultipartUploadCommand({ Bucket: ctx.bucket, Key: key }),
    );
    const part = await ctx.s3.send(
      new UploadPartCommand({
        Bucket: ctx.bucket,
        Key: key,
        UploadId,
        PartNumber: 1,
        Body: "late result",
      }),
    );
    const err = await rejectionOf(() =>
      ctx.s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: ctx.bucket,
          Key: key,
          UploadId,
          MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] },
          IfNoneMatch: "*",
        }),
      ),
    );
    expect(err.$metadata?.httpStatusCode).toBe(412);
    expect(err.name).toBe("PreconditionFailed");
    expect(Buffer.from(await getBody(key)).toString()).toBe("already committed");
  });

  it("ListObjectsV2 pages with ContinuationToken return every key once, in UTF-8 binary order", async () => {
    const prefix = `${ctx.key("list")}/`;
    // Mixed case, `_` and `-` are legal in our ids and are where locale order and binary differ.
    const names = [
      ...["A", "B", "Z", "a", "b", "z", "_a", "-a", "a_b", "a-b", "a0", "a9", "aA", "aZ"],
      ...["s000001", "s000002", "s000010", "S000003", "shard_1", "shard-1", "shard1"],
      ...["x.json", "x_json", "x-json", "x0json"],
    ];
    expect(names).toHaveLength(25);
    await Promise.all(names.map((name) => put(`${prefix}${name}`, name)));

    const pages: string[][] = [];
    let token: string | undefined;
    do {
      const page = await ctx.s3.send(
        new ListObjectsV2Command({
          Bucket: ctx.bucket,
          Prefix: prefix,
          MaxKeys: 10,
          ContinuationToken: token,
        }),
      );
      pages.push((page.Contents ?? []).map((o) => o.Key ?? ""));
      expect(page.KeyCount).toBe(pages.at(-1)?.length);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
      if (page.IsTruncated) expect(token).toBeTruthy();
    } while (token && pages.length < 10);

    expect(pages.map((p) => p.length)).toEqual([10, 10, 5]);
    const expected = names.map((name) => `${prefix}${name}`).sort(utf8Order);
    expect(pages.flat()).toEqual(expected);
  });

  it("a presigned GET URL serves the object without SDK signing", async () => {
    const key = ctx.key("presigned");
    await put(key, "hello from a presigned url");
    const url = await getSignedUrl(ctx.s3, new GetObjectCommand({ Bucket: ctx.bucket, Key: key }), {
      expiresIn: 60,
    });
    const res = await request(url);
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe("hello from a presigned url");
  });
});
