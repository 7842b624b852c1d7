/**
 * The local server's data folder, through the AWS SDK against the real server: what a server
 * wrote is what the next server on the same folder serves, and one folder has one server.
 */
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { afterEach, describe, expect, it } from "vitest";
import { createAwsClients } from "../shared/aws.ts";
import { ConfigError } from "../shared/errors.ts";
import { LOCAL_CREDENTIALS, startLocalAwsServer } from "./aws-server.ts";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function dataDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "shardfleet-disk-s3-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A server on `dir` and an S3 client for it; `stop` closes both (also done after the test). */
async function serve(dir: string) {
  const server = await startLocalAwsServer({ dataDir: dir });
  const clients = createAwsClients({
    endpoint: server.endpoint,
    region: server.region,
    credentials: LOCAL_CREDENTIALS,
  });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    clients.destroy();
    await server.close();
  };
  cleanups.push(stop);
  return { server, s3: clients.s3, stop };
}

const text = async (
  s3: ReturnType<typeof createAwsClients>["s3"],
  Key: string,
): Promise<string | undefined> => {
  try {
    const res = await s3.send(new GetObjectCommand({ Bucket: "b", Key }));
    return await res.Body?.transformToString();
  } catch (err) {
    if ((err as { name?: string }).name === "NoSuchKey") return undefined;
    throw err;
  }
};

describe("a local server on a data folder", () => {
  it("serves after a restart every object as it was: body, ETag, type, metadata, time; deletes stay deleted", async () => {
    const dir = await dataDir();
    const first = await serve(dir);
    expect(first.server.loaded).toEqual({ buckets: 0, objects: 0, unreadable: [] });
    await first.server.createBucket("b");
    await first.s3.send(
      new PutObjectCommand({
        Bucket: "b",
        Key: "operations/Op_1/manifest.json",
        Body: '{"status":"succeeded"}',
        ContentType: "application/json",
        Metadata: { tenant: "acme" },
      }),
    );
    // Multipart (two parts, the first at S3's 5 MiB minimum): its ETag is not a body MD5.
    const big = Buffer.alloc(6 * 1024 * 1024, "x");
    await new Upload({
      client: first.s3,
      params: { Bucket: "b", Key: "operations/Op_1/input/book.xlsx", Body: big },
      partSize: 5 * 1024 * 1024,
    }).done();
    await first.s3.send(
      new CopyObjectCommand({
        Bucket: "b",
        Key: "copy.json",
        CopySource: "b/operations/Op_1/manifest.json",
      }),
    );
    await first.s3.send(new PutObjectCommand({ Bucket: "b", Key: "gone", Body: "x" }));
    await first.s3.send(new DeleteObjectCommand({ Bucket: "b", Key: "gone" }));
    const keys = ["operations/Op_1/manifest.json", "operations/Op_1/input/book.xlsx", "copy.json"];
    const heads = await Promise.all(
      keys.map((Key) => first.s3.send(new HeadObjectCommand({ Bucket: "b", Key }))),
    );
    expect(heads[1]?.ETag).toMatch(/-2"$/);
    await first.stop();

    const second = await serve(dir);
    expect(second.server.loaded).toEqual({ buckets: 1, objects: 3, unreadable: [] });
    for (const [i, Key] of keys.entries()) {
      const head = await second.s3.send(new HeadObjectCommand({ Bucket: "b", Key }));
      expect(head.ETag).toBe(heads[i]?.ETag);
      expect(head.ContentType).toBe(heads[i]?.ContentType);
      expect(head.ContentLength).toBe(heads[i]?.ContentLength);
      expect(head.LastModified?.toISOString()).toBe(heads[i]?.LastModified?.toISOString());
      expect(head.Metadata).toEqual(heads[i]?.Metadata);
    }
    expect(await text(second.s3, "operations/Op_1/manifest.json")).toBe('{"status":"succeeded"}');
    expect(heads[0]?.Metadata).toEqual({ tenant: "acme" });
    const body = await second.s3.send(
      new GetObjectCommand({ Bucket: "b", Key: "operations/Op_1/input/book.xlsx" }),
    );
    expect(Buffer.from(await body.Body!.transformToByteArray()).equals(big)).toBe(true);
    expect(await text(second.s3, "gone")).toBeUndefined();
  }, 60_000);

  it("keeps the hooks' behaviour after a restart: conditional writes and binary-order listing", async () => {
    const dir = await dataDir();
    const first = await serve(dir);
    await first.server.createBucket("b");
    const names = ["p/a", "p/A", "p/_", "p/b", "p/B"];
    for (const Key of names) {
      await first.s3.send(new PutObjectCommand({ Bucket: "b", Key, Body: Key }));
    }
    await first.s3.send(
      new PutObjectCommand({ Bucket: "b", Key: "done.json", Body: "first", IfNoneMatch: "*" }),
    );
    await first.stop();

    const second = await serve(dir);
    await expect(
      second.s3.send(
        new PutObjectCommand({ Bucket: "b", Key: "done.json", Body: "late", IfNoneMatch: "*" }),
      ),
    ).rejects.toMatchObject({ $metadata: { httpStatusCode: 412 } });
    expect(await text(second.s3, "done.json")).toBe("first");
    const listed: string[] = [];
    let token: string | undefined;
    do {
      const page = await second.s3.send(
        new ListObjectsV2Command({
          Bucket: "b",
          Prefix: "p/",
          MaxKeys: 2,
          ContinuationToken: token,
        }),
      );
      listed.push(...(page.Contents ?? []).map((o) => o.Key ?? ""));
      token = page.NextContinuationToken;
    } while (token);
    expect(listed).toEqual(["p/A", "p/B", "p/_", "p/a", "p/b"]);
  }, 60_000);

  it("is refused to a second server while one serves from it, naming the holder", async () => {
    const dir = await dataDir();
    await serve(dir);
    const second = startLocalAwsServer({ dataDir: dir });
    await expect(second).rejects.toBeInstanceOf(ConfigError);
    await expect(second).rejects.toThrow(
      new RegExp(`data folder .* is in use by process ${process.pid}`),
    );
  });

  it("is taken over from a process that died holding it; a half-written file is dropped", async () => {
    const dir = await dataDir();
    const first = await serve(dir);
    await first.server.createBucket("b");
    await first.s3.send(new PutObjectCommand({ Bucket: "b", Key: "kept", Body: "kept" }));
    await first.stop();
    // What a SIGKILLed server leaves: its lock, and a temporary file it never renamed.
    const dead = spawn(process.execPath, ["-e", ""]);
    const deadPid = dead.pid;
    await new Promise((resolve) => dead.once("exit", resolve));
    await writeFile(path.join(dir, "lock"), `${deadPid}\n`);
    const bucketDir = path.join(dir, "s3", "bucket-b");
    const fanout = path.join(bucketDir, "00");
    await mkdir(fanout, { recursive: true });
    await writeFile(path.join(fanout, `${"0".repeat(64)}.obj.1234.tmp`), "SFOBJ1 {");

    const second = await serve(dir);
    expect(second.server.loaded).toEqual({ buckets: 1, objects: 1, unreadable: [] });
    expect(await text(second.s3, "kept")).toBe("kept");
    expect(await readdir(fanout)).toEqual([]);
  }, 60_000);
});
