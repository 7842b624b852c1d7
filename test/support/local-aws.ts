/**
 * The one local-AWS harness of every test tier: a real local SQS/S3 server (the stack's own),
 * with a bucket and queues named after the test file, and the clients, object store and queue
 * adapter the code under test takes. One per test file (beforeAll/afterAll).
 */
import { GetQueueAttributesCommand } from "@aws-sdk/client-sqs";
import {
  LOCAL_CREDENTIALS,
  type LocalAwsServer,
  startLocalAwsServer,
} from "../../src/local/aws-server.ts";
import { type ProvisionedResources, provisionResources } from "../../src/local/provision.ts";
import { type AwsClients, createAwsClients } from "../../src/shared/aws.ts";
import { ObjectStore } from "../../src/shared/object-store.ts";
import { type ReceivedMessage, ShardQueue } from "../../src/shared/shard-queue.ts";
import { waitFor } from "./wait.ts";

export interface LocalAws {
  server: LocalAwsServer;
  clients: AwsClients;
  resources: ProvisionedResources;
  store: ObjectStore;
  queue: ShardQueue;
  close(): Promise<void>;
}

export interface LocalAwsOptions {
  /** The queues' visibility timeout. @default 30 */
  visibilityTimeoutSeconds?: number;
}

/** A local server with the bucket `{name}-bucket` and queues prefixed `name`. */
export async function startLocalAws(
  name: string,
  options: LocalAwsOptions = {},
): Promise<LocalAws> {
  const server = await startLocalAwsServer({ port: 0 });
  const clients = createAwsClients({
    endpoint: server.endpoint,
    region: server.region,
    credentials: LOCAL_CREDENTIALS,
  });
  const resources = await provisionResources(
    clients,
    { bucket: `${name}-bucket`, prefix: name },
    { visibilityTimeoutSeconds: options.visibilityTimeoutSeconds ?? 30 },
  );
  return {
    server,
    clients,
    resources,
    store: new ObjectStore({ s3: clients.s3 }, { bucket: resources.bucket }),
    queue: new ShardQueue({ sqs: clients.sqs }),
    async close() {
      clients.destroy();
      await server.close();
    },
  };
}

let buckets = 0;

/**
 * A fresh bucket `{prefix}-{n}` with its own queues on the same server, and a store on it: for
 * files whose tests each want a clean operation space.
 */
export async function freshBucket(
  aws: LocalAws,
  prefix: string,
): Promise<{ name: string; resources: ProvisionedResources; store: ObjectStore }> {
  const name = `${prefix}-${++buckets}`;
  const resources = await provisionResources(aws.clients, { bucket: name, prefix: name });
  return {
    name,
    resources,
    store: new ObjectStore({ s3: aws.clients.s3 }, { bucket: resources.bucket }),
  };
}

let queueSets = 0;

/**
 * A fresh work queue and DLQ on the same server. Tests that stop a consumer need one each: an
 * aborted long poll stays open on the server for the rest of its wait, and would swallow the
 * next test's messages for a visibility timeout (as it would on SQS).
 */
export async function freshQueues(
  aws: LocalAws,
  visibilityTimeoutSeconds = 30,
): Promise<ProvisionedResources["queues"]> {
  const name = `q${++queueSets}-${process.pid}`;
  const out = await provisionResources(
    aws.clients,
    { bucket: `${name}-unused`, prefix: name },
    { visibilityTimeoutSeconds },
  );
  return out.queues;
}

/** The environment a component process needs to reach `aws` (queues and the rest are the caller's). */
export function localAwsEnv(aws: LocalAws): Record<string, string> {
  return {
    AWS_ENDPOINT_URL: aws.server.endpoint,
    AWS_REGION: aws.server.region,
    AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
    SHARDFLEET_BUCKET: aws.resources.bucket,
  };
}

/** At most one message receivable on `queueUrl` within a 1 s poll, taken for 30 s. */
export function receiveOne(queue: ShardQueue, queueUrl: string): Promise<ReceivedMessage[]> {
  return queue.receive(queueUrl, { max: 1, waitSeconds: 1, visibilityTimeout: 30 });
}

/** Waits until a message is receivable on `queueUrl` and takes it for 30 s. */
export async function waitForMessage(
  what: string,
  queue: ShardQueue,
  queueUrl: string,
  timeoutMs?: number,
): Promise<ReceivedMessage> {
  const [message] = await waitFor(
    what,
    async () => {
      const got = await receiveOne(queue, queueUrl);
      return got.length > 0 ? got : undefined;
    },
    timeoutMs,
  );
  return message!;
}

/** Visible plus in-flight messages on a queue. */
export async function messagesOn(aws: LocalAws, queueUrl: string): Promise<number> {
  const out = await aws.clients.sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    }),
  );
  return (
    Number(out.Attributes?.ApproximateNumberOfMessages ?? 0) +
    Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0)
  );
}
