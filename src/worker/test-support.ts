/**
 * Test helpers for worker integration tests: a local SQS/S3 server with fresh resources, and
 * operations written by hand (manifest + shard slices) the way the splitter writes them.
 */
import { GetQueueAttributesCommand } from "@aws-sdk/client-sqs";
import { type LocalAwsServer, startLocalAwsServer } from "../local/aws-server.ts";
import { type ProvisionedResources, provisionResources } from "../local/provision.ts";
import { type AwsClients, createAwsClients } from "../shared/aws.ts";
import { keys } from "../shared/keys.ts";
import { ObjectStore } from "../shared/object-store.ts";
import { type Cell, encodeCell } from "../shared/schemas/cells.ts";
import { type Manifest, manifestSchema } from "../shared/schemas/operation.ts";
import type { ShardMessage } from "../shared/schemas/shard.ts";
import { ShardQueue } from "../shared/shard-queue.ts";

export interface LocalAws {
  server: LocalAwsServer;
  clients: AwsClients;
  resources: ProvisionedResources;
  store: ObjectStore;
  queue: ShardQueue;
  close(): Promise<void>;
}

export async function startLocalAws(
  name: string,
  visibilityTimeoutSeconds = 30,
): Promise<LocalAws> {
  const server = await startLocalAwsServer({ port: 0 });
  const clients = createAwsClients({
    endpoint: server.endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
  });
  const resources = await provisionResources(
    clients,
    { bucket: `${name}-bucket`, prefix: name },
    { visibilityTimeoutSeconds },
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

let queueSets = 0;

/**
 * A fresh work queue and DLQ on the same server. Tests that stop a consumer need one each: an
 * aborted long poll stays open on the server for the rest of its wait, and would swallow the
 * next test's messages for a visibility timeout (as it would on SQS).
 */
export async function freshQueues(aws: LocalAws): Promise<ProvisionedResources["queues"]> {
  const name = `q${++queueSets}-${process.pid}`;
  const out = await provisionResources(
    aws.clients,
    { bucket: `${name}-unused`, prefix: name },
    {
      visibilityTimeoutSeconds: 30,
    },
  );
  return out.queues;
}

/** Writes a manifest for `task` over `headers`. */
export async function writeManifest(
  store: ObjectStore,
  operationId: string,
  headers: string[],
  task: { name: string; options: Record<string, unknown> },
): Promise<Manifest> {
  const now = new Date().toISOString();
  const manifest: Manifest = {
    v: 1,
    id: operationId,
    status: "running",
    spec: { version: 1, task, shardSize: 500, toleratedFailurePercent: 100 },
    input: { key: keys.input(operationId, "csv"), filename: "in.csv", format: "csv", bytes: 1 },
    headers,
    createdAt: now,
    updatedAt: now,
  };
  await store.putJson(keys.manifest(operationId), manifestSchema, manifest);
  return manifest;
}

/** Writes one shard slice (rows `start…`) and returns its queue message. */
export async function writeSlice(
  store: ObjectStore,
  operationId: string,
  shardId: string,
  start: number,
  rows: Cell[][],
): Promise<ShardMessage> {
  const body = rows
    .map((cells, k) => `${JSON.stringify({ i: start + k, c: cells.map(encodeCell) })}\n`)
    .join("");
  await store.putText(keys.shardInput(operationId, shardId), body, "application/x-ndjson");
  return { v: 1, operationId, shardId, start, end: start + rows.length };
}

/** Polls `check` every 50 ms until it returns a value other than undefined. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 8000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
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
