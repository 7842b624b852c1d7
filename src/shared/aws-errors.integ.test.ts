/**
 * The classifier against what the SDK throws for real answers of the local S3 and SQS server.
 */
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { ReceiveMessageCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalAws, startLocalAws } from "../../test/support/local-aws.ts";
import { LOCAL_CREDENTIALS } from "../local/aws-server.ts";
import { createAwsClients } from "./aws.ts";
import { classifyAwsError } from "./aws-errors.ts";

let aws: LocalAws;
let clients: ReturnType<typeof createAwsClients>;
beforeAll(async () => {
  aws = await startLocalAws("aws-errors");
  clients = createAwsClients({
    endpoint: aws.server.endpoint,
    region: aws.server.region,
    credentials: LOCAL_CREDENTIALS,
  });
});
afterAll(async () => {
  clients?.destroy();
  await aws?.close();
});

/** What the call threw (it must throw). */
async function thrown(call: Promise<unknown>): Promise<unknown> {
  return call.then(
    () => expect.unreachable("the call succeeded"),
    (err: unknown) => err,
  );
}

describe("classifyAwsError on the local server's answers", () => {
  it("GET and HEAD of a missing object: not-found", async () => {
    const Bucket = aws.resources.bucket;
    const get = await thrown(clients.s3.send(new GetObjectCommand({ Bucket, Key: "nope" })));
    const head = await thrown(clients.s3.send(new HeadObjectCommand({ Bucket, Key: "nope" })));
    expect([classifyAwsError(get), classifyAwsError(head)]).toEqual(["not-found", "not-found"]);
  });

  it("a put with If-None-Match over an existing object: precondition-failed", async () => {
    const put = { Bucket: aws.resources.bucket, Key: "once", Body: "1" };
    await clients.s3.send(new PutObjectCommand(put));
    const err = await thrown(clients.s3.send(new PutObjectCommand({ ...put, IfNoneMatch: "*" })));
    expect(classifyAwsError(err)).toBe("precondition-failed");
  });

  it("a receive from a queue that does not exist: not-found", async () => {
    const QueueUrl = `${aws.server.endpoint}/000000000000/no-such-queue`;
    const err = await thrown(
      clients.sqs.send(new ReceiveMessageCommand({ QueueUrl, WaitTimeSeconds: 0 })),
    );
    expect(classifyAwsError(err)).toBe("not-found");
  });

  it("a message over the size limit: invalid", async () => {
    const err = await thrown(
      clients.sqs.send(
        new SendMessageCommand({
          QueueUrl: aws.resources.queues.work,
          MessageBody: "x".repeat(2 * 1024 * 1024),
        }),
      ),
    );
    expect(classifyAwsError(err)).toBe("invalid");
  });
});
