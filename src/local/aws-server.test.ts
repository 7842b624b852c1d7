import { mkdtemp, rm } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  CreateQueueCommand,
  GetQueueUrlCommand,
  ListQueuesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import type { FastifyInstance } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { createSqsClient } from "../shared/aws.ts";
import { ConfigError } from "../shared/errors.ts";
import { buildLocalAwsApp, type LocalAwsServer, startLocalAwsServer } from "./aws-server.ts";
import { openDiskS3Store } from "./disk-s3-store.ts";
import { fauxqsStoreClasses } from "./fauxqs-internals.ts";

const credentials = { accessKeyId: "local", secretAccessKey: "local" };
const quietLogger = { debug() {}, info() {}, warn() {}, error() {} };

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * Where the app keeps objects: fauxqs's memory (the default), or a data folder (the local
 * stack's default): every behaviour the hooks add must hold on both.
 */
const storages = [
  { storage: "in memory", build: async () => buildLocalAwsApp() },
  {
    storage: "in a data folder",
    build: async () => {
      const dir = await mkdtemp(path.join(tmpdir(), "shardfleet-aws-data-"));
      const classes = await fauxqsStoreClasses();
      const disk = openDiskS3Store({ S3Store: classes.S3Store }, dir);
      cleanups.push(async () => {
        disk.release();
        await rm(dir, { recursive: true, force: true });
      });
      return buildLocalAwsApp({
        stores: {
          s3Store: disk.store,
          sqsStore: new classes.SqsStore(),
          snsStore: new classes.SnsStore(),
        },
      });
    },
  },
];

describe.each(storages)("objects $storage", ({ build }) => {
  /** A not-listening app with bucket `b`; `configure` runs before the app is ready. */
  async function appWithBucket(
    configure: (app: FastifyInstance) => void = () => {},
  ): Promise<FastifyInstance> {
    const app = await build();
    cleanups.push(() => app.close());
    configure(app);
    const res = await app.inject({ method: "PUT", url: "/b" });
    expect(res.statusCode).toBe(200);
    return app;
  }

  function put(
    app: FastifyInstance,
    path: string,
    body: string,
    headers: Record<string, string> = {},
  ) {
    return app.inject({
      method: "PUT",
      url: path,
      payload: body,
      headers: { "content-type": "application/octet-stream", ...headers },
    });
  }

  const utf8Order = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));
  const errorCode = (xml: string) => /<Code>([^<]*)<\/Code>/.exec(xml)?.[1];

  describe("conditional writes", () => {
    it("If-None-Match: * creates a missing key and answers 412 PreconditionFailed when it exists", async () => {
      const app = await appWithBucket();
      expect((await put(app, "/b/k", "one", { "if-none-match": "*" })).statusCode).toBe(200);

      const second = await put(app, "/b/k", "two", { "if-none-match": "*" });
      expect(second.statusCode).toBe(412);
      expect(second.headers["content-type"]).toContain("application/xml");
      expect(errorCode(second.body)).toBe("PreconditionFailed");
      expect((await app.inject({ method: "GET", url: "/b/k" })).body).toBe("one");
    });

    it("If-Match writes on the current ETag, 412s on a stale one and 404s NoSuchKey on a missing key", async () => {
      const app = await appWithBucket();
      const v1 = await put(app, "/b/k", "v1");
      const etag1 = String(v1.headers.etag);

      const v2 = await put(app, "/b/k", "v2", { "if-match": etag1 });
      expect(v2.statusCode).toBe(200);
      // Unquoted ETags are accepted too.
      const v3 = await put(app, "/b/k", "v3", {
        "if-match": String(v2.headers.etag).replaceAll('"', ""),
      });
      expect(v3.statusCode).toBe(200);

      const stale = await put(app, "/b/k", "v4", { "if-match": etag1 });
      expect(stale.statusCode).toBe(412);
      expect(errorCode(stale.body)).toBe("PreconditionFailed");
      expect((await app.inject({ method: "GET", url: "/b/k" })).body).toBe("v3");

      const missing = await put(app, "/b/nope", "x", { "if-match": etag1 });
      expect(missing.statusCode).toBe(404);
      expect(errorCode(missing.body)).toBe("NoSuchKey");
    });

    it("a conditional write to a missing bucket answers NoSuchBucket", async () => {
      const app = await appWithBucket();
      const conditions: Array<Record<string, string>> = [
        { "if-match": '"abc"' },
        { "if-none-match": "*" },
      ];
      for (const headers of conditions) {
        const res = await put(app, "/missing/k", "x", headers);
        expect(res.statusCode).toBe(404);
        expect(errorCode(res.body)).toBe("NoSuchBucket");
      }
    });

    it("conditions apply to keys that need URL encoding", async () => {
      const app = await appWithBucket();
      const path = `/b/${["dir with space", "ü+&=", "x%y"].map(encodeURIComponent).join("/")}`;
      expect((await put(app, path, "one", { "if-none-match": "*" })).statusCode).toBe(200);
      expect((await put(app, path, "two", { "if-none-match": "*" })).statusCode).toBe(412);
      expect((await app.inject({ method: "GET", url: path })).body).toBe("one");
    });

    it("If-None-Match with an ETag value is NotImplemented on writes, as on S3", async () => {
      const app = await appWithBucket();
      const res = await put(app, "/b/k", "x", { "if-none-match": '"abc"' });
      expect(res.statusCode).toBe(501);
      expect(errorCode(res.body)).toBe("NotImplemented");
    });

    it("CompleteMultipartUpload honours If-None-Match: *", async () => {
      const app = await appWithBucket();
      const multipart = async (key: string, content: string) => {
        const created = await app.inject({ method: "POST", url: `/b/${key}?uploads` });
        const uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(created.body)?.[1];
        expect(uploadId).toBeDefined();
        const part = await put(app, `/b/${key}?uploadId=${uploadId}&partNumber=1`, content);
        const completeXml = `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>${part.headers.etag}</ETag></Part></CompleteMultipartUpload>`;
        return app.inject({
          method: "POST",
          url: `/b/${key}?uploadId=${uploadId}`,
          payload: completeXml,
          headers: { "content-type": "application/xml", "if-none-match": "*" },
        });
      };
      expect((await multipart("fresh", "a")).statusCode).toBe(200);
      await put(app, "/b/taken", "committed");
      const res = await multipart("taken", "late");
      expect(res.statusCode).toBe(412);
      expect(errorCode(res.body)).toBe("PreconditionFailed");
      expect((await app.inject({ method: "GET", url: "/b/taken" })).body).toBe("committed");
    });

    it("20 racing If-None-Match: * writers give one 200 and nineteen 412s", async () => {
      const app = await appWithBucket();
      const bodies = Array.from({ length: 20 }, (_, i) => `w${i}`);
      const results = await Promise.all(
        bodies.map((body) => put(app, "/b/race", body, { "if-none-match": "*" })),
      );
      const statuses = results.map((r) => r.statusCode);
      expect(statuses.filter((s) => s === 200)).toHaveLength(1);
      expect(statuses.filter((s) => s === 412)).toHaveLength(19);
      const winner = bodies[statuses.indexOf(200)];
      expect((await app.inject({ method: "GET", url: "/b/race" })).body).toBe(winner);
    });

    it("a client that disconnects while waiting for a key's lock does not wedge the key", async () => {
      // Stretch the lock holder's existence check so the second writer surely waits behind it.
      const app = await appWithBucket((app) =>
        app.addHook("onRequest", async (request) => {
          if (request.method === "HEAD") await new Promise((resolve) => setTimeout(resolve, 300));
        }),
      );
      await app.listen({ host: "127.0.0.1", port: 0 });
      const { port } = app.server.address() as { port: number };
      const send = (key: string, body: string, abortAfterMs?: number) =>
        new Promise<number>((resolve, reject) => {
          const req = httpRequest(
            {
              host: "127.0.0.1",
              port,
              method: "PUT",
              path: `/b/${key}`,
              headers: { "if-none-match": "*", "content-length": Buffer.byteLength(body) },
            },
            (res) => {
              res.resume();
              resolve(res.statusCode ?? 0);
            },
          );
          req.on("error", (err) => (abortAfterMs === undefined ? reject(err) : resolve(-1)));
          req.end(body);
          if (abortAfterMs !== undefined) setTimeout(() => req.destroy(), abortAfterMs);
        });

      const holder = send("k", "holder");
      await new Promise((resolve) => setTimeout(resolve, 50));
      const aborted = send("k", "aborted", 100);
      expect(await holder).toBe(200);
      expect(await aborted).toBe(-1);
      // Both later writers get an answer: nothing leaked the lock.
      expect(await send("k", "late")).toBe(412);
      expect(await send("k2", "fresh")).toBe(200);
      expect((await app.inject({ method: "GET", url: "/b/k" })).body).toBe("holder");
    });

    it("a single PUT body above 11 MiB is refused with 413 (use multipart for big objects)", async () => {
      const app = await appWithBucket();
      const res = await put(app, "/b/big", "x".repeat(11 * 1024 * 1024 + 1));
      expect(res.statusCode).toBe(413);
    });
  });

  describe("ListObjectsV2", () => {
    const listKeys = (xml: string, tag: "Key" | "Prefix") =>
      [...xml.matchAll(new RegExp(`<${tag}>([^<]*)</${tag}>`, "g"))].map((m) => m[1] ?? "");

    it("pages keys and common prefixes together in binary order", async () => {
      const app = await appWithBucket();
      for (const key of ["p/a/1", "p/A/1", "p/_/1", "p/b.txt", "p/B.txt", "p/a/2"]) {
        await put(app, `/b/${key}`, key);
      }
      const pages: string[][] = [];
      let token: string | undefined;
      do {
        const res = await app.inject({
          method: "GET",
          url: "/b",
          query: {
            "list-type": "2",
            prefix: "p/",
            delimiter: "/",
            "max-keys": "2",
            ...(token ? { "continuation-token": token } : {}),
          },
        });
        expect(res.statusCode).toBe(200);
        // The first <Prefix> is the request's own; the rest are common prefixes.
        const entries = [...listKeys(res.body, "Key"), ...listKeys(res.body, "Prefix").slice(1)];
        pages.push(entries.sort(utf8Order));
        token = /<NextContinuationToken>([^<]*)</.exec(res.body)?.[1];
      } while (token && pages.length < 10);
      expect(pages).toEqual([["p/A/", "p/B.txt"], ["p/_/", "p/a/"], ["p/b.txt"]]);
    });

    it("never returns more than 1000 keys a page", async () => {
      const app = await appWithBucket();
      await put(app, "/b/one", "1");
      const res = await app.inject({ method: "GET", url: "/b?list-type=2&max-keys=5000" });
      expect(res.body).toContain("<MaxKeys>1000</MaxKeys>");
    });

    it("answers NoSuchBucket for a missing bucket", async () => {
      const app = await appWithBucket();
      const res = await app.inject({ method: "GET", url: "/missing?list-type=2" });
      expect(res.statusCode).toBe(404);
      expect(errorCode(res.body)).toBe("NoSuchBucket");
    });
  });
});

describe("startLocalAwsServer", () => {
  async function start(): Promise<LocalAwsServer> {
    const server = await startLocalAwsServer();
    cleanups.push(() => server.close());
    return server;
  }

  it("listens on loopback at a free port and reports its endpoint", async () => {
    const server = await start();
    expect(server.port).toBeGreaterThan(0);
    expect(server.endpoint).toBe(`http://127.0.0.1:${server.port}`);
    expect(server.region).toBe("us-east-1");
  });

  it("rejects with a ConfigError naming the port when it is in use", async () => {
    const server = await start();
    const err = await startLocalAwsServer({ port: server.port }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toBe(
      `local AWS server cannot listen on 127.0.0.1:${server.port}: the port is already in use; pick another port or 0 for a free one`,
    );
  });

  it("rejects an invalid port before trying to listen", async () => {
    await expect(startLocalAwsServer({ port: 70000 })).rejects.toBeInstanceOf(ConfigError);
  });

  it("hands out queue URLs on its own address, usable by a client without an endpoint", async () => {
    const server = await start();
    const sqs = createSqsClient({ endpoint: server.endpoint, region: server.region, credentials });
    cleanups.push(async () => sqs.destroy());
    const expected = `${server.endpoint}/000000000000/urls`;

    const created = await sqs.send(new CreateQueueCommand({ QueueName: "urls" }));
    expect(created.QueueUrl).toBe(expected);
    expect((await sqs.send(new GetQueueUrlCommand({ QueueName: "urls" }))).QueueUrl).toBe(expected);
    expect((await sqs.send(new ListQueuesCommand({}))).QueueUrls).toEqual([expected]);

    // The SDK sends to the queue URL's host when the client has no endpoint of its own.
    const bare = new SQSClient({ region: server.region, credentials, logger: quietLogger });
    cleanups.push(async () => bare.destroy());
    const body = "http://sqs.us-east-1.localhost:1/000000000000/urls stays as sent";
    await bare.send(new SendMessageCommand({ QueueUrl: expected, MessageBody: body }));
    const got = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: expected, WaitTimeSeconds: 1 }),
    );
    expect(got.Messages?.[0]?.Body).toBe(body);
  });

  it("close() ends a pending long poll and frees the port", async () => {
    const server = await startLocalAwsServer();
    const sqs = createSqsClient({
      endpoint: server.endpoint,
      region: server.region,
      credentials,
      maxAttempts: 1,
    });
    cleanups.push(async () => sqs.destroy());
    const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: "closing" }));
    const polling = sqs.send(new ReceiveMessageCommand({ QueueUrl, WaitTimeSeconds: 20 })).then(
      () => "settled",
      () => "settled",
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    await server.close();
    const outcome = await Promise.race([
      polling,
      new Promise((resolve) => setTimeout(() => resolve("still waiting"), 5000)),
    ]);
    expect(outcome).toBe("settled");
    const again = await startLocalAwsServer({ port: server.port });
    await again.close();
  });
});
