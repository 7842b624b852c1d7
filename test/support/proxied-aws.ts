/**
 * The local-AWS harness (./local-aws.ts) with a fault-injecting proxy (./fault-proxy.ts) in
 * front of it, and clients that talk through the proxy: what a test that injects network faults
 * or counts requests takes. One per test file (beforeAll/afterAll).
 */
import { LOCAL_CREDENTIALS } from "../../src/local/aws-server.ts";
import { type AwsClients, createAwsClients } from "../../src/shared/aws.ts";
import type { AwsTimeouts } from "../../src/shared/config.ts";
import { ObjectStore } from "../../src/shared/object-store.ts";
import { type FaultProxy, startFaultProxy } from "./fault-proxy.ts";
import { type LocalAws, startLocalAws } from "./local-aws.ts";

export interface ProxiedAws {
  /** The server, its own direct clients and store (setup and checks that bypass the proxy). */
  aws: LocalAws;
  proxy: FaultProxy;
  /** Clients whose every request goes through the proxy. */
  clients: AwsClients;
  /** The test bucket, through the proxy. */
  store: ObjectStore;
  close(): Promise<void>;
}

export async function startProxiedAws(
  name: string,
  options: { timeouts?: AwsTimeouts } = {},
): Promise<ProxiedAws> {
  const aws = await startLocalAws(name);
  const proxy = await startFaultProxy(aws.server.endpoint);
  const clients = createAwsClients({
    endpoint: proxy.endpoint,
    region: aws.server.region,
    credentials: LOCAL_CREDENTIALS,
    ...(options.timeouts ? { timeouts: options.timeouts } : {}),
  });
  return {
    aws,
    proxy,
    clients,
    store: new ObjectStore({ s3: clients.s3 }, { bucket: aws.resources.bucket }),
    async close() {
      clients.destroy();
      await proxy.close();
      await aws.close();
    },
  };
}
