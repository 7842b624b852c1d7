/**
 * Where the contract suite runs: the local server by default, real AWS when
 * `SHARDFLEET_CONTRACT_TARGET=aws` (with credentials from the SDK's provider chain, `AWS_REGION`,
 * and `SHARDFLEET_CONTRACT_BUCKET`, an existing bucket in that region). Every queue and key is
 * named uniquely for the run, so tests are independent and runs never collide; `close()` deletes
 * what the run created.
 */
import { randomBytes } from "node:crypto";
import type { S3Client } from "@aws-sdk/client-s3";
import {
  CreateBucketCommand,
  DeleteObjectsCommand,
  ListObjectsV2Command,
} from "@aws-sdk/client-s3";
import type { SQSClient } from "@aws-sdk/client-sqs";
import {
  CreateQueueCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
} from "@aws-sdk/client-sqs";
import { LOCAL_CREDENTIALS, startLocalAwsServer } from "../../src/local/aws-server.ts";
import { createAwsClients } from "../../src/shared/aws.ts";

export type ContractTarget = "local" | "aws";

export interface ContractQueue {
  url: string;
  arn: string;
}

export interface ContractContext {
  readonly target: ContractTarget;
  readonly sqs: SQSClient;
  readonly s3: S3Client;
  readonly bucket: string;
  /** Creates a queue with a run-unique name; `close()` deletes it. */
  createQueue(name: string, attributes?: Record<string, string>): Promise<ContractQueue>;
  /** A run-unique object key; every call returns a new one. `close()` deletes it on AWS. */
  key(name: string): string;
  /** Deletes the run's queues and objects, closes clients and the local server. */
  close(): Promise<void>;
}

export async function openContractContext(
  env: NodeJS.ProcessEnv = process.env,
): Promise<ContractContext> {
  const target: ContractTarget = env.SHARDFLEET_CONTRACT_TARGET === "aws" ? "aws" : "local";
  const runId = `${Date.now().toString(36)}${randomBytes(3).toString("hex")}`;
  const prefix = `contract/${runId}/`;
  let counter = 0;
  const unique = (name: string) => `${name}-${++counter}`;

  let bucket: string;
  let clients: ReturnType<typeof createAwsClients>;
  let stopServer: () => Promise<void> = async () => {};
  if (target === "aws") {
    const region = env.AWS_REGION || env.AWS_DEFAULT_REGION;
    bucket = env.SHARDFLEET_CONTRACT_BUCKET ?? "";
    if (!region || !bucket) {
      throw new Error(
        "SHARDFLEET_CONTRACT_TARGET=aws needs AWS_REGION and SHARDFLEET_CONTRACT_BUCKET (an existing bucket)",
      );
    }
    // An empty env: endpoint overrides (AWS_ENDPOINT_URL*) must not redirect the AWS run.
    clients = createAwsClients({ region, env: {} });
  } else {
    const server = await startLocalAwsServer({ port: 0 });
    stopServer = () => server.close();
    bucket = `contract-${runId}`;
    clients = createAwsClients({
      endpoint: server.endpoint,
      region: server.region,
      credentials: LOCAL_CREDENTIALS,
    });
    await clients.s3.send(new CreateBucketCommand({ Bucket: bucket }));
  }
  const { sqs, s3 } = clients;
  const queueUrls: string[] = [];

  return {
    target,
    sqs,
    s3,
    bucket,
    async createQueue(name, attributes) {
      const created = await sqs.send(
        new CreateQueueCommand({
          QueueName: `sf-contract-${runId}-${unique(name)}`,
          ...(attributes ? { Attributes: attributes } : {}),
        }),
      );
      const url = created.QueueUrl;
      if (!url) throw new Error(`CreateQueue ${name} returned no QueueUrl`);
      queueUrls.push(url);
      const attrs = await sqs.send(
        new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["QueueArn"] }),
      );
      const arn = attrs.Attributes?.QueueArn;
      if (!arn) throw new Error(`GetQueueAttributes ${name} returned no QueueArn`);
      return { url, arn };
    },
    key: (name) => `${prefix}${unique(name)}`,
    async close() {
      try {
        if (target === "aws") {
          await Promise.allSettled(
            queueUrls.map((QueueUrl) => sqs.send(new DeleteQueueCommand({ QueueUrl }))),
          );
          await deletePrefix(s3, bucket, prefix);
        }
      } finally {
        clients.destroy();
        await stopServer();
      }
    },
  };
}

async function deletePrefix(s3: S3Client, bucket: string, prefix: string): Promise<void> {
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    const objects = (page.Contents ?? []).flatMap((o) => (o.Key ? [{ Key: o.Key }] : []));
    if (objects.length > 0) {
      await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: objects } }));
    }
    token = page.NextContinuationToken;
  } while (token);
}
