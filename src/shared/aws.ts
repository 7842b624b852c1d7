/**
 * The AWS client factory: the only place SQS, S3, EC2 and SSM clients are built.
 *
 * Endpoints follow the SDK's standard variables, `AWS_ENDPOINT_URL_<SERVICE>` first, then
 * `AWS_ENDPOINT_URL`, so the same code talks to AWS or to the local server. S3 goes path-style
 * whenever its endpoint is overridden (local servers have no per-bucket DNS names).
 *
 * Every client gets timeouts on its sockets (the SDK sets none by default), so a connection that
 * hangs without resetting fails the call with a retryable TimeoutError instead of blocking it
 * forever: one for the TCP connect, and one for silence. The second measures how long the
 * socket has seen no byte either way, not the whole call, so a big upload or a long download
 * that keeps moving is never cut; it must exceed the longest SQS long-poll wait (20 s), during
 * which the server is silent by design. A body its reader leaves paused that long is cut too,
 * which the object store's resumable reads absorb (they go on from the next byte).
 */
import { EC2Client } from "@aws-sdk/client-ec2";
import { S3Client } from "@aws-sdk/client-s3";
import { SQSClient } from "@aws-sdk/client-sqs";
import type { SSMClient } from "@aws-sdk/client-ssm";
import { type AwsTimeouts, DEFAULT_AWS_TIMEOUTS } from "./config.ts";
import { isLoopbackHost } from "./loopback.ts";

export type AwsService = "SQS" | "S3" | "EC2" | "SSM";

export interface AwsClientOptions {
  /** AWS region. @default process env AWS_REGION, then "us-east-1" */
  region?: string;
  /** Environment to read endpoint overrides from. @default process.env */
  env?: NodeJS.ProcessEnv;
  /** Explicit endpoint for every service; wins over the environment. */
  endpoint?: string;
  /** Static credentials (the local stack uses dummy ones). @default the SDK's provider chain */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Attempts per call, including the first. @default 3 */
  maxAttempts?: number;
  /**
   * How long a connect may take and how long a socket may stay silent within a call.
   * @default DEFAULT_AWS_TIMEOUTS (SHARDFLEET_AWS_CONNECT_TIMEOUT_S, SHARDFLEET_AWS_IDLE_TIMEOUT_S)
   */
  timeouts?: AwsTimeouts;
}

export interface AwsClients {
  sqs: SQSClient;
  s3: S3Client;
  ec2: EC2Client;
  /** Closes every client's sockets. */
  destroy(): void;
}

/** The endpoint override for a service from standard variables, or undefined for real AWS. */
export function endpointFor(service: AwsService, env: NodeJS.ProcessEnv): string | undefined {
  return env[`AWS_ENDPOINT_URL_${service}`] || env.AWS_ENDPOINT_URL || undefined;
}

/**
 * The request handler settings every SDK client gets (also those built elsewhere, like SES).
 * NodeHttpHandler's `socketTimeout` is the idle timeout (rolling, through the body);
 * `requestTimeout` would count until the answer's headers, a whole upload included.
 */
export function requestHandlerOptions(timeouts: AwsTimeouts = DEFAULT_AWS_TIMEOUTS): {
  connectionTimeout: number;
  socketTimeout: number;
} {
  return { connectionTimeout: timeouts.connectMs, socketTimeout: timeouts.idleMs };
}

function commonConfig(service: AwsService, options: AwsClientOptions) {
  const env = options.env ?? process.env;
  const endpoint = options.endpoint ?? endpointFor(service, env);
  const timeouts = options.timeouts ?? DEFAULT_AWS_TIMEOUTS;
  return {
    region: options.region ?? (env.AWS_REGION || env.AWS_DEFAULT_REGION || "us-east-1"),
    maxAttempts: options.maxAttempts ?? 3,
    requestHandler: requestHandlerOptions(timeouts),
    ...(endpoint ? { endpoint } : {}),
    ...(options.credentials ? { credentials: options.credentials } : {}),
  };
}

export function createSqsClient(options: AwsClientOptions = {}): SQSClient {
  return new SQSClient(commonConfig("SQS", options));
}

/**
 * Whether S3 bodies may be sent unsigned: only where nothing on the way can change them unseen —
 * an https endpoint (TLS guards them; no endpoint means AWS, https) or loopback. A plain-http
 * endpoint across a network (MinIO on another machine) keeps the body's SHA-256 in the signature.
 * An endpoint that is not a URL is refused by the SDK anyway; it keeps signing here.
 */
export function unsignedPayloadAllowed(endpoint: string | undefined): boolean {
  if (endpoint === undefined) return true;
  if (!URL.canParse(endpoint)) return false;
  const url = new URL(endpoint);
  return url.protocol === "https:" || isLoopbackHost(url.hostname);
}

/**
 * Signs a request without hashing its body (`x-amz-content-sha256: UNSIGNED-PAYLOAD`, which S3
 * accepts): SigV4 otherwise reads every byte of a buffer body through SHA-256, the largest cost
 * of writing slices after the copy itself. Only where `unsignedPayloadAllowed`; stream bodies go
 * unsigned anyway.
 */
function signWithoutBodyHash(request: unknown): void {
  const r = request as { headers?: Record<string, string>; body?: unknown };
  if (r.headers && (typeof r.body === "string" || ArrayBuffer.isView(r.body))) {
    r.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD";
  }
}

export function createS3Client(options: AwsClientOptions = {}): S3Client {
  const config = commonConfig("S3", options);
  const s3 = new S3Client({
    ...config,
    forcePathStyle: config.endpoint !== undefined,
    // No CRC-32 of every body sent or received unless the operation requires one (DeleteObjects):
    // TLS guards the bytes in transit, and nothing here reads the checksums. Since SDK 3.729 the
    // default computes one per PUT, a scan of every slice the splitter writes.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
  if (unsignedPayloadAllowed(config.endpoint)) {
    s3.middlewareStack.add(
      (next) => (args) => {
        signWithoutBodyHash(args.request);
        return next(args);
      },
      { step: "build", name: "shardfleetUnsignedPayload" },
    );
  }
  return s3;
}

export function createEc2Client(options: AwsClientOptions = {}): EC2Client {
  return new EC2Client(commonConfig("EC2", options));
}

/**
 * Parameter Store, where a scheduler may read its API tokens once at start. Not part of
 * createAwsClients, and loaded on demand: nothing else uses SSM, and workers start without it.
 */
export async function createSsmClient(options: AwsClientOptions = {}): Promise<SSMClient> {
  const { SSMClient } = await import("@aws-sdk/client-ssm");
  return new SSMClient(commonConfig("SSM", options));
}

export function createAwsClients(options: AwsClientOptions = {}): AwsClients {
  const sqs = createSqsClient(options);
  const s3 = createS3Client(options);
  const ec2 = createEc2Client(options);
  return {
    sqs,
    s3,
    ec2,
    destroy() {
      sqs.destroy();
      s3.destroy();
      ec2.destroy();
    },
  };
}
