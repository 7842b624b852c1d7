/**
 * The local stack's own SQS- and S3-compatible server: fauxqs 1.9.2, listening on loopback only,
 * with the S3 behaviour shardfleet depends on that fauxqs lacks added as fastify hooks.
 *
 * What the hooks add, and why:
 * - **Conditional writes.** fauxqs ignores `If-None-Match` / `If-Match` on PutObject and
 *   CompleteMultipartUpload, but a shard's commit is "first finisher wins" (`If-None-Match: *`).
 *   Every write to one bucket/key is serialised by a per-key lock, so check-then-write is atomic:
 *   20 racing conditional writers give exactly one 200 and nineteen 412s, as on S3.
 * - **ListObjectsV2 order.** fauxqs sorts keys with `localeCompare` but skips past a continuation
 *   token by binary comparison, so with mixed case or `_` in keys (legal in our ids) a paginated
 *   listing silently drops keys. V2 listings are re-paginated here in S3's UTF-8 binary order,
 *   with S3's cap of 1000 keys a page.
 * - **Queue URLs on the listen address.** fauxqs names queues `http://sqs.<region>.localhost:PORT/…`,
 *   a host Node cannot resolve; SDK clients without an explicit endpoint send requests to the
 *   queue URL's host. Clients see `http://127.0.0.1:PORT/000000000000/<name>` instead, translated
 *   to fauxqs's internal form on the way in. (fauxqs's package `exports` allows no deep import
 *   of its stores, so the URL host cannot be configured directly.)
 *
 * Limits the rest of the system designs around: a single PutObject or UploadPart body is at most
 * 11 MiB (fauxqs's fastify `bodyLimit`), so large objects go through multipart
 * (`@aws-sdk/lib-storage` `Upload`); signatures are not checked. Everything lives in memory and
 * vanishes on `close()`, unless `dataDir` is set: then objects and buckets are also kept in
 * files there (./disk-s3-store.ts) and loaded again at the next start; queues and messages are
 * not kept.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { buildApp } from "fauxqs";
import { ConfigError } from "../shared/errors.ts";
import { escapeXml, unescapeXml } from "../shared/xml.ts";
import { type DiskLoadReport, openDiskS3Store } from "./disk-s3-store.ts";
import { type FauxqsS3Store, fauxqsStoreClasses } from "./fauxqs-internals.ts";

export interface LocalAwsServerOptions {
  /** TCP port; 0 picks a free one. @default 0 */
  port?: number;
  /**
   * Listen address. Only loopback: the server checks no credentials, so it must never be
   * reachable from another host. @default "127.0.0.1"
   */
  host?: "127.0.0.1";
  /** Log every request (fauxqs's fastify logger, pino JSON on stdout). @default false */
  logger?: boolean;
  /** Region reported to clients and used when a request's signature names none. @default "us-east-1" */
  region?: string;
  /**
   * Keep buckets and objects in this folder (created if missing) and load them at start; one
   * server per folder at a time. Queues and messages are not kept.
   * @default none (everything in memory)
   */
  dataDir?: string;
}

export interface LocalAwsServer {
  /** Base URL for SQS and S3 clients, e.g. `http://127.0.0.1:43117`. */
  readonly endpoint: string;
  readonly port: number;
  readonly region: string;
  /** With `dataDir`: what was loaded from it at start. */
  readonly loaded: DiskLoadReport | undefined;
  /** Creates a bucket (idempotent) without needing a client; handy in test setup. */
  createBucket(name: string): Promise<void>;
  /**
   * Stops listening, closes open connections and ends pending long polls; all queues and
   * messages are dropped, and so are objects unless they are kept in `dataDir` (whose lock is
   * released).
   */
  close(): Promise<void>;
}

/** Dummy credentials: the server checks no signatures, but the SDK insists on signing. */
export const LOCAL_CREDENTIALS = { accessKeyId: "test", secretAccessKey: "test" } as const;

const DEFAULT_REGION = "us-east-1";
/** S3 never returns more than this many keys a page, whatever MaxKeys asks for. */
const MAX_KEYS_PER_PAGE = 1000;

/**
 * Builds the fastify app (fauxqs routes plus shardfleet's hooks) without listening, so tests can
 * `inject()` requests. `startLocalAwsServer` is the way to run it.
 */
export function buildLocalAwsApp(
  options: Pick<LocalAwsServerOptions, "logger" | "region"> & {
    /** fauxqs's stores to serve from (a disk-backed S3 store). @default fauxqs's own, in memory */
    stores?: { s3Store: FauxqsS3Store; sqsStore: object; snsStore: object };
  } = {},
): FastifyInstance {
  const region = options.region ?? DEFAULT_REGION;
  const app = buildApp({
    logger: options.logger ?? false,
    defaultRegion: region,
    // fauxqs types its stores as its own (unexported) classes; these are instances of them.
    ...(options.stores ? { stores: options.stores as never } : {}),
  });
  addConditionalWrites(app);
  addBinaryOrderListing(app);
  addLoopbackQueueUrls(app, region);
  return app;
}

/** Starts the server on loopback. Rejects with a ConfigError naming the port if it cannot listen. */
export async function startLocalAwsServer(
  options: LocalAwsServerOptions = {},
): Promise<LocalAwsServer> {
  const host = options.host ?? "127.0.0.1";
  const requestedPort = options.port ?? 0;
  if (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65535) {
    throw new ConfigError(`local AWS server port must be an integer 0-65535, got ${requestedPort}`);
  }
  const region = options.region ?? DEFAULT_REGION;
  const disk = options.dataDir ? await openDataDir(options.dataDir) : undefined;
  const app = buildLocalAwsApp({
    logger: options.logger ?? false,
    region,
    ...(disk ? { stores: disk.stores } : {}),
  });
  const closeAll = async () => {
    try {
      await app.close();
    } finally {
      disk?.release();
    }
  };
  try {
    await app.listen({ host, port: requestedPort });
  } catch (err) {
    await closeAll().catch(() => {});
    const code = (err as NodeJS.ErrnoException).code;
    const reason =
      code === "EADDRINUSE"
        ? "the port is already in use; pick another port or 0 for a free one"
        : code === "EACCES"
          ? "permission denied; use a port above 1023"
          : (err as Error).message;
    throw new ConfigError(`local AWS server cannot listen on ${host}:${requestedPort}: ${reason}`, {
      cause: err,
      details: { host, port: requestedPort, code },
    });
  }
  const address = app.server.address();
  if (address === null || typeof address === "string") {
    throw new Error("local AWS server is not listening on a TCP port");
  }
  const port = address.port;
  return {
    endpoint: `http://${host}:${port}`,
    port,
    region,
    loaded: disk?.loaded,
    async createBucket(name) {
      const res = await app.inject({ method: "PUT", url: `/${encodeURIComponent(name)}` });
      if (res.statusCode !== 200) {
        throw new Error(`creating bucket ${name} failed: ${res.statusCode} ${res.body}`);
      }
    },
    close: closeAll,
  };
}

/** fauxqs's stores with the S3 store on `dataDir`, loaded and locked. */
async function openDataDir(dataDir: string) {
  const classes = await fauxqsStoreClasses();
  let disk: ReturnType<typeof openDiskS3Store>;
  try {
    disk = openDiskS3Store({ S3Store: classes.S3Store }, dataDir);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(
      `cannot use the local data folder ${dataDir}: ${(err as Error).message}`,
      { cause: err, details: { dataDir } },
    );
  }
  return {
    stores: {
      s3Store: disk.store,
      sqsStore: new classes.SqsStore(),
      snsStore: new classes.SnsStore(),
    },
    loaded: disk.loaded,
    release: disk.release,
  };
}

// ---------------------------------------------------------------------------------------------
// Conditional writes

/** Serialises async critical sections per key; each caller gets a release function. */
class KeyedLock {
  readonly #tails = new Map<string, Promise<void>>();

  /** Resolves once every earlier holder of `key` has released; call the result to release. */
  async acquire(key: string): Promise<() => void> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let unlock!: () => void;
    const mine = new Promise<void>((resolve) => {
      unlock = resolve;
    });
    const tail = previous.then(() => mine);
    this.#tails.set(key, tail);
    await previous;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      unlock();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    };
  }
}

type ObjectWrite = { bucket: string; key: string; conditional: boolean };

/**
 * The object write a request performs (PutObject, CopyObject, CompleteMultipartUpload,
 * DeleteObject), or undefined. UploadPart and CreateMultipartUpload do not change the key.
 */
function objectWriteOf(request: FastifyRequest): ObjectWrite | undefined {
  if (request.routeOptions.url !== "/:bucket/*") return undefined;
  const params = request.params as { bucket?: string; "*"?: string };
  const query = (request.query ?? {}) as Record<string, string | undefined>;
  const bucket = params.bucket;
  const key = params["*"];
  if (!bucket || !key) return undefined;
  const conditional =
    request.headers["if-none-match"] !== undefined || request.headers["if-match"] !== undefined;
  switch (request.method) {
    case "PUT":
      return query.uploadId === undefined ? { bucket, key, conditional } : undefined;
    case "POST":
      return query.uploadId !== undefined ? { bucket, key, conditional } : undefined;
    case "DELETE":
      return query.uploadId === undefined ? { bucket, key, conditional: false } : undefined;
    default:
      return undefined;
  }
}

function s3ErrorXml(code: string, message: string, resource: string): string {
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    "<Error>",
    `  <Code>${code}</Code>`,
    `  <Message>${escapeXml(message)}</Message>`,
    `  <Resource>${escapeXml(resource)}</Resource>`,
    `  <RequestId>${Date.now().toString(16).toUpperCase()}</RequestId>`,
    "  <HostId>shardfleet-local</HostId>",
    "</Error>",
  ].join("\n");
}

function sendS3Error(
  reply: FastifyReply,
  status: number,
  code: string,
  message: string,
  resource: string,
) {
  return reply
    .code(status)
    .header("content-type", "application/xml")
    .send(s3ErrorXml(code, message, resource));
}

function objectPath(bucket: string, key: string): string {
  return `/${encodeURIComponent(bucket)}/${key.split("/").map(encodeURIComponent).join("/")}`;
}

/** ETags compare without their quotes; clients send them either way. */
function sameEtag(a: string, b: string): boolean {
  return a.replaceAll('"', "").trim() === b.replaceAll('"', "").trim();
}

/**
 * Adds S3 conditional writes. The lock is taken in `preHandler` (after the body is parsed, so a
 * slow upload never holds it), then the current object is read, the condition decided, and
 * fauxqs's synchronous handler writes. The lock is released once a response is on its way
 * (`onSend`, which every reply, success or error, passes through), with `onError` and
 * `onResponse` as idempotent back-ups.
 *
 * Deliberately NOT released when the client aborts: a fully received request still completes
 * (as on S3), and freeing the key mid-check would let a second writer pass the same check.
 */
function addConditionalWrites(app: FastifyInstance): void {
  const lock = new KeyedLock();
  const releases = new WeakMap<FastifyRequest, () => void>();
  const release = (request: FastifyRequest) => {
    releases.get(request)?.();
    releases.delete(request);
  };

  app.addHook("preHandler", async (request, reply) => {
    const write = objectWriteOf(request);
    if (!write) return;
    releases.set(request, await lock.acquire(`${write.bucket}/${write.key}`));
    if (!write.conditional) return;

    const resource = `/${write.bucket}/${write.key}`;
    const preconditionFailed = () =>
      sendS3Error(
        reply,
        412,
        "PreconditionFailed",
        "At least one of the pre-conditions you specified did not hold",
        resource,
      );
    const ifNoneMatch = request.headers["if-none-match"];
    const ifMatch = request.headers["if-match"];
    if (ifNoneMatch !== undefined && ifNoneMatch.trim() !== "*") {
      // S3 only understands `If-None-Match: *` on writes.
      return sendS3Error(
        reply,
        501,
        "NotImplemented",
        "A header you provided implies functionality that is not implemented",
        resource,
      );
    }
    const head = await app.inject({ method: "HEAD", url: objectPath(write.bucket, write.key) });
    if (head.statusCode !== 200 && head.statusCode !== 404) {
      return sendS3Error(reply, 500, "InternalError", "cannot read the current object", resource);
    }
    const exists = head.statusCode === 200;
    if (ifNoneMatch !== undefined && exists) {
      return preconditionFailed();
    }
    if (ifMatch !== undefined) {
      if (!exists) {
        // A missing bucket is left to fauxqs, which answers NoSuchBucket.
        const bucketHead = await app.inject({
          method: "HEAD",
          url: `/${encodeURIComponent(write.bucket)}`,
        });
        if (bucketHead.statusCode !== 200) return;
        return sendS3Error(reply, 404, "NoSuchKey", "The specified key does not exist.", resource);
      }
      const etag = String(head.headers.etag ?? "");
      if (ifMatch.trim() !== "*" && !sameEtag(ifMatch, etag)) {
        return preconditionFailed();
      }
    }
  });
  app.addHook("onSend", async (request, _reply, payload) => {
    release(request);
    return payload;
  });
  app.addHook("onError", async (request) => release(request));
  app.addHook("onResponse", async (request) => release(request));
}

// ---------------------------------------------------------------------------------------------
// ListObjectsV2 in binary order

/** S3's listing order: UTF-8 bytes, not UTF-16 units and never locale rules. */
function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

type ListingEntry = { name: string; xml: string; kind: "object" | "prefix" };

function parseV1Listing(xml: string): ListingEntry[] {
  const entries: ListingEntry[] = [];
  for (const m of xml.matchAll(/<Contents>[\s\S]*?<\/Contents>/g)) {
    const key = /<Key>([\s\S]*?)<\/Key>/.exec(m[0])?.[1];
    if (key !== undefined) entries.push({ name: unescapeXml(key), xml: m[0], kind: "object" });
  }
  for (const m of xml.matchAll(
    /<CommonPrefixes>\s*<Prefix>([\s\S]*?)<\/Prefix>\s*<\/CommonPrefixes>/g,
  )) {
    entries.push({ name: unescapeXml(m[1] ?? ""), xml: m[0], kind: "prefix" });
  }
  return entries;
}

/**
 * Answers ListObjectsV2 itself: fetches the complete listing from fauxqs (a V1 listing without a
 * marker, which is correct apart from order), sorts it in binary order and cuts the page.
 * The continuation token is the base64 of the last key or prefix returned, like fauxqs's.
 */
function addBinaryOrderListing(app: FastifyInstance): void {
  app.addHook("preHandler", async (request, reply) => {
    if (request.method !== "GET") return;
    const route = request.routeOptions.url;
    const params = request.params as { bucket?: string; "*"?: string };
    if (route !== "/:bucket" && !(route === "/:bucket/*" && !params["*"])) return;
    const query = (request.query ?? {}) as Record<string, string | undefined>;
    if (query["list-type"] !== "2" || !params.bucket) return;

    const prefix = query.prefix ?? "";
    const delimiter = query.delimiter || undefined;
    const full = await app.inject({
      method: "GET",
      url: `/${encodeURIComponent(params.bucket)}`,
      query: { prefix, "max-keys": "2147483647", ...(delimiter ? { delimiter } : {}) },
    });
    if (full.statusCode !== 200) {
      return reply
        .code(full.statusCode)
        .header("content-type", String(full.headers["content-type"] ?? "application/xml"))
        .send(full.body);
    }

    const requested =
      query["max-keys"] === undefined ? MAX_KEYS_PER_PAGE : Number(query["max-keys"]);
    const maxKeys =
      Number.isInteger(requested) && requested >= 0
        ? Math.min(requested, MAX_KEYS_PER_PAGE)
        : MAX_KEYS_PER_PAGE;
    const token = query["continuation-token"];
    const startAfter = query["start-after"] ?? "";
    const after = token ? Buffer.from(token, "base64").toString("utf8") : startAfter;
    const remaining = parseV1Listing(full.body)
      .filter((e) => after === "" || compareUtf8(e.name, after) > 0)
      .sort((a, b) => compareUtf8(a.name, b.name));
    const page = remaining.slice(0, maxKeys);
    const last = page.at(-1);
    const truncated = maxKeys > 0 && remaining.length > page.length;

    const lines = [
      `<?xml version="1.0" encoding="UTF-8"?>`,
      `<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">`,
      `  <Name>${escapeXml(params.bucket)}</Name>`,
      `  <Prefix>${escapeXml(prefix)}</Prefix>`,
      `  <KeyCount>${page.length}</KeyCount>`,
      `  <MaxKeys>${maxKeys}</MaxKeys>`,
      `  <IsTruncated>${truncated}</IsTruncated>`,
    ];
    if (startAfter) lines.push(`  <StartAfter>${escapeXml(startAfter)}</StartAfter>`);
    if (token) lines.push(`  <ContinuationToken>${escapeXml(token)}</ContinuationToken>`);
    if (truncated && last) {
      const next = Buffer.from(last.name, "utf8").toString("base64");
      lines.push(`  <NextContinuationToken>${escapeXml(next)}</NextContinuationToken>`);
    }
    if (delimiter) lines.push(`  <Delimiter>${escapeXml(delimiter)}</Delimiter>`);
    for (const e of page) if (e.kind === "object") lines.push(`  ${e.xml}`);
    for (const e of page) if (e.kind === "prefix") lines.push(`  ${e.xml}`);
    lines.push("</ListBucketResult>");
    return reply.code(200).header("content-type", "application/xml").send(lines.join("\n"));
  });
}

// ---------------------------------------------------------------------------------------------
// Queue URLs on the listen address

const SQS_CONTENT_TYPE = "application/x-amz-json-1.0";
const INTERNAL_QUEUE_URL = /^http:\/\/sqs\.[^./]+\.localhost(?::\d+)?\//;

/** The region in a SigV4 `Authorization` header's credential scope, as fauxqs reads it. */
function regionOfRequest(request: FastifyRequest): string | undefined {
  const auth = request.headers.authorization;
  return auth ? /Credential=\S+?\/\d{8}\/([^/]+)\//.exec(auth)?.[1] : undefined;
}

/**
 * Rewrites queue URLs between fauxqs's internal `http://sqs.<region>.localhost:PORT/…` and the
 * `http://127.0.0.1:PORT/…` clients use. Requests without a socket port (`inject`) are untouched.
 * Only the actions that return URLs are rewritten, never message bodies.
 */
function addLoopbackQueueUrls(app: FastifyInstance, defaultRegion: string): void {
  const isSqs = (request: FastifyRequest) =>
    request.method === "POST" &&
    request.routeOptions.url === "/" &&
    (request.headers["content-type"] ?? "").includes(SQS_CONTENT_TYPE);

  app.addHook("preHandler", async (request) => {
    const port = request.socket.localPort;
    if (!isSqs(request) || !port) return;
    // fauxqs builds a new queue's URL from the Host header: pin it to the listen address.
    request.headers.host = `127.0.0.1:${port}`;
    const body = request.body as { QueueUrl?: unknown } | null;
    if (!body || typeof body.QueueUrl !== "string" || INTERNAL_QUEUE_URL.test(body.QueueUrl)) {
      return;
    }
    let path: string;
    try {
      path = new URL(body.QueueUrl).pathname;
    } catch {
      return; // fauxqs answers QueueDoesNotExist
    }
    const region = regionOfRequest(request) ?? defaultRegion;
    body.QueueUrl = `http://sqs.${region}.localhost:${port}${path}`;
  });

  app.addHook("onSend", async (request, reply, payload) => {
    const port = request.socket.localPort;
    if (!isSqs(request) || !port || typeof payload !== "string" || reply.statusCode !== 200) {
      return payload;
    }
    const action = String(request.headers["x-amz-target"] ?? "").replace("AmazonSQS.", "");
    if (action !== "CreateQueue" && action !== "GetQueueUrl" && action !== "ListQueues") {
      return payload;
    }
    const external = (url: unknown) =>
      typeof url === "string" ? url.replace(INTERNAL_QUEUE_URL, `http://127.0.0.1:${port}/`) : url;
    const out = JSON.parse(payload) as { QueueUrl?: unknown; QueueUrls?: unknown };
    if (out.QueueUrl !== undefined) out.QueueUrl = external(out.QueueUrl);
    if (Array.isArray(out.QueueUrls)) out.QueueUrls = out.QueueUrls.map(external);
    return JSON.stringify(out);
  });
}
