/** Test helper: AWS clients and the object store of a running local stack's S3/SQS server. */
import { LOCAL_CREDENTIALS, type LocalStack } from "../../src/local/stack.ts";
import { type AwsClients, createAwsClients } from "../../src/shared/aws.ts";
import { keys } from "../../src/shared/keys.ts";
import { ObjectStore } from "../../src/shared/object-store.ts";
import { type Attempt, attemptSchema } from "../../src/shared/schemas/shard.ts";

/** Clients for the stack's S3/SQS server; the caller destroys them. */
export function stackClients(stack: LocalStack): AwsClients {
  return createAwsClients({
    endpoint: stack.endpoint,
    region: stack.region,
    credentials: LOCAL_CREDENTIALS,
  });
}

/** Runs `use` with the stack's bucket (and the clients behind it), then destroys the clients. */
export async function withStackStore<T>(
  stack: LocalStack,
  use: (store: ObjectStore, clients: AwsClients) => Promise<T>,
): Promise<T> {
  const clients = stackClients(stack);
  try {
    return await use(new ObjectStore(clients, { bucket: stack.resources.bucket }), clients);
  } finally {
    clients.destroy();
  }
}

/** Every attempt record of one shard, as workers wrote them (unreadable ones skipped). */
export async function shardAttempts(
  store: ObjectStore,
  operationId: string,
  shardId: string,
): Promise<Attempt[]> {
  const out: Attempt[] = [];
  for (const key of await store.list(keys.attemptsPrefix(operationId, shardId))) {
    const attempt = await store.getJson(key, attemptSchema);
    if (attempt) out.push(attempt);
  }
  return out;
}
