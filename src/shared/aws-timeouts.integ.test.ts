/**
 * SDK calls through a peer that hangs: a fault-injecting proxy in front of the real local
 * SQS/S3 server accepts requests and never answers nor closes. Without socket timeouts on the
 * clients each of these calls waits forever (the SDK sets none); with them the attempt fails
 * with a retryable TimeoutError and the SDK's retry gets the answer.
 */

import { Readable } from "node:stream";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { SendMessageCommand } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { type FaultProxy, startFaultProxy } from "../../test/support/fault-proxy.ts";
import { type LocalAws, startLocalAws } from "../../test/support/local-aws.ts";
import { LOCAL_CREDENTIALS } from "../local/aws-server.ts";
import { type AwsClientOptions, createAwsClients } from "./aws.ts";
import { classifyAwsError } from "./aws-errors.ts";
import { ObjectStore } from "./object-store.ts";
import { ShardQueue } from "./shard-queue.ts";

/** Short, so a hung attempt gives up quickly; the tests wait for answers, not for times. */
const TIMEOUTS = { connectMs: 2_000, idleMs: 1_000 };

let aws: LocalAws;
let proxy: FaultProxy;
const destroyers: (() => void)[] = [];
beforeAll(async () => {
  aws = await startLocalAws("timeouts");
  proxy = await startFaultProxy(aws.server.endpoint);
});
afterAll(async () => {
  for (const destroy of destroyers) destroy();
  await proxy?.close();
  await aws?.close();
});

function clientsThroughProxy(options: AwsClientOptions = {}) {
  const clients = createAwsClients({
    endpoint: proxy.endpoint,
    region: aws.server.region,
    credentials: LOCAL_CREDENTIALS,
    timeouts: TIMEOUTS,
    ...options,
  });
  destroyers.push(() => clients.destroy());
  return clients;
}

const requestsFor = (key: string, method: string) =>
  proxy.seen.filter((r) => r.method === method && r.url.includes(key));

describe("an AWS peer that hangs", () => {
  it("a GET that is never answered times out and its retry reads the object", async () => {
    const store = new ObjectStore(
      { s3: clientsThroughProxy().s3 },
      { bucket: aws.resources.bucket },
    );
    await aws.store.putText("hang/get.txt", "every byte");
    proxy.hang((r) => r.method === "GET" && r.url.includes("hang/get.txt"), 1);
    expect(await store.getText("hang/get.txt")).toBe("every byte");
    expect(requestsFor("hang/get.txt", "GET")).toHaveLength(2);
  });

  it("the attempt fails with a TimeoutError the error table calls transient", async () => {
    const s3 = clientsThroughProxy({ maxAttempts: 1 }).s3;
    const store = new ObjectStore({ s3 }, { bucket: aws.resources.bucket });
    await aws.store.putText("hang/once.txt", "x");
    proxy.hang((r) => r.method === "GET" && r.url.includes("hang/once.txt"), 1);
    const err = await store.getText("hang/once.txt").then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as Error | undefined)?.name).toBe("TimeoutError");
    expect(classifyAwsError(err)).toBe("transient");
  });

  it("a conditional PUT the server acted on but never answered is still this writer's", async () => {
    const store = new ObjectStore(
      { s3: clientsThroughProxy().s3 },
      { bucket: aws.resources.bucket },
    );
    const record = z.object({ owner: z.string() });
    proxy.hang((r) => r.method === "PUT" && r.url.includes("hang/create.json"), 1, {
      afterServer: true,
    });
    expect(await store.putJsonIfAbsent("hang/create.json", record, { owner: "a" })).toBe(true);
    expect(requestsFor("hang/create.json", "PUT")).toHaveLength(2);
    expect(await aws.store.getJson("hang/create.json", record)).toEqual({ owner: "a" });
  });

  it("a ReceiveMessage that is never answered times out and the retry receives", async () => {
    const queue = new ShardQueue({ sqs: clientsThroughProxy().sqs });
    const work = aws.resources.queues.work;
    await aws.clients.sqs.send(new SendMessageCommand({ QueueUrl: work, MessageBody: "m1" }));
    const seenBefore = proxy.seen.length;
    proxy.hang((r) => r.method === "POST", 1);
    // The queue URL names the server: point it at the proxy, as the local stack's interposer does.
    const throughProxy = proxy.endpoint + new URL(work).pathname;
    const got = await queue.receive(throughProxy, {
      max: 1,
      waitSeconds: 0,
      visibilityTimeout: 30,
    });
    expect(got.map((m) => m.body)).toEqual(["m1"]);
    expect(proxy.seen.slice(seenBefore).filter((r) => r.method === "POST")).toHaveLength(2);
  });

  it("an upload slower than the idle timeout but never silent that long is not cut", async () => {
    const s3 = clientsThroughProxy({ maxAttempts: 1 }).s3;
    const chunk = Buffer.alloc(1024, 7);
    const chunks = 30;
    // 30 chunks 100 ms apart: three times the idle timeout in all, no silence near it.
    const body = Readable.from(
      (async function* () {
        for (let i = 0; i < chunks; i++) {
          await new Promise((r) => setTimeout(r, 100));
          yield chunk;
        }
      })(),
    );
    await s3.send(
      new PutObjectCommand({
        Bucket: aws.resources.bucket,
        Key: "hang/slow-upload.bin",
        Body: body,
        ContentLength: chunk.length * chunks,
      }),
    );
    expect((await aws.store.getBytes("hang/slow-upload.bin"))?.length).toBe(chunk.length * chunks);
  });
});
