/**
 * A bench measured in a process of its own (so its CPU and RSS are the measured code's, not the
 * local S3/SQS server's), both sides: the parent runs the script with the server's address in
 * BENCH_* variables and reads back one JSON line; the script takes the address, clients and
 * store from `childAws`.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { LOCAL_CREDENTIALS } from "../src/local/aws-server.ts";
import { type AwsClients, createAwsClients } from "../src/shared/aws.ts";
import { ObjectStore } from "../src/shared/object-store.ts";
import type { LocalAws } from "../test/support/local-aws.ts";

/**
 * Runs `script` through tsx in a process of its own with `env` (and the local server's address)
 * added to this one's, `nodeFlags` before the script; resolves the JSON it prints.
 */
export async function runChild<T>(
  aws: LocalAws,
  script: string,
  env: Record<string, string>,
  nodeFlags: readonly string[] = [],
): Promise<T> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [...nodeFlags, "--import", import.meta.resolve("tsx"), script],
    {
      env: {
        ...process.env,
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
        BENCH_ENDPOINT: aws.server.endpoint,
        BENCH_REGION: aws.server.region,
        BENCH_BUCKET: aws.resources.bucket,
        ...env,
      },
      maxBuffer: 1 << 20,
    },
  );
  return JSON.parse(stdout) as T;
}

/** In the child: a variable the parent set (throws naming it when it is not). */
export function childEnv(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

/** In the child: clients and the bench bucket's store for the parent's local server. */
export function childAws(): { clients: AwsClients; store: ObjectStore } {
  const clients = createAwsClients({
    endpoint: childEnv("BENCH_ENDPOINT"),
    region: childEnv("BENCH_REGION"),
    credentials: LOCAL_CREDENTIALS,
  });
  return {
    clients,
    store: new ObjectStore({ s3: clients.s3 }, { bucket: childEnv("BENCH_BUCKET") }),
  };
}
