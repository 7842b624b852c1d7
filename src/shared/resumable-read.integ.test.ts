/**
 * Reads through connections cut mid-body (a fault-injecting proxy in front of the real local
 * S3 server): the reader gets every byte once, from ranged re-requests.
 */
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FaultProxy } from "../../test/support/fault-proxy.ts";
import type { LocalAws } from "../../test/support/local-aws.ts";
import { type ProxiedAws, startProxiedAws } from "../../test/support/proxied-aws.ts";
import type { ObjectStore } from "./object-store.ts";

let env: ProxiedAws;
/** The server's own store (setup and checks past the proxy). */
let aws: LocalAws;
let proxy: FaultProxy;
/** The bucket through the proxy. */
let store: ObjectStore;
beforeAll(async () => {
  env = await startProxiedAws("resumable");
  ({ aws, proxy, store } = env);
});
afterAll(async () => {
  await env?.close();
});

const KB = 1024;
const gets = (key: string) => proxy.seen.filter((r) => r.method === "GET" && r.url.includes(key));

describe("reads through dropped connections", () => {
  it("getText returns every byte once after two cuts mid-body, resuming with ranges", async () => {
    const text = randomBytes(300 * KB).toString("base64"); // ~400 KB of text
    await aws.store.putText("cut/text", text);
    proxy.cutBodies((r) => r.url.includes("cut/text"), 50 * KB, 2);
    expect(await store.getText("cut/text")).toBe(text);
    const seen = gets("cut/text");
    expect(seen).toHaveLength(3);
    expect(seen[0]!.range).toBeUndefined();
    expect(seen[1]!.range).toMatch(/^bytes=\d+-$/);
    expect(Number(seen[2]!.range!.slice(6, -1))).toBeGreaterThan(
      Number(seen[1]!.range!.slice(6, -1)),
    );
  });

  it("getStream hides the seam from a streaming reader", async () => {
    const body = randomBytes(600 * KB);
    await aws.store.upload("cut/stream", Readable.from([body]));
    proxy.cutBodies((r) => r.url.includes("cut/stream"), 200 * KB, 1);
    const stream = (await store.getStream("cut/stream"))!;
    const parts: Buffer[] = [];
    for await (const chunk of stream) parts.push(chunk as Buffer);
    expect(Buffer.concat(parts).equals(body)).toBe(true);
  });

  it("getRange resumes inside its range and stops at its end", async () => {
    const body = randomBytes(300 * KB);
    await aws.store.upload("cut/range", Readable.from([body]));
    proxy.cutBodies((r) => r.url.includes("cut/range"), 20 * KB, 1);
    const stream = (await store.getRange("cut/range", 100 * KB, 200 * KB))!;
    const parts: Buffer[] = [];
    for await (const chunk of stream) parts.push(chunk as Buffer);
    expect(Buffer.concat(parts).equals(body.subarray(100 * KB, 200 * KB))).toBe(true);
    const seen = gets("cut/range");
    expect(seen.map((r) => r.range)).toEqual([
      `bytes=${100 * KB}-${200 * KB - 1}`,
      `bytes=${120 * KB}-${200 * KB - 1}`,
    ]);
  });

  it("refuses to stitch two versions of an object together", async () => {
    await aws.store.putText("cut/changing", "a".repeat(200 * KB));
    // Overwritten between the cut and the resume.
    proxy.cutBodies(
      (r) => r.url.includes("cut/changing"),
      10 * KB,
      1,
      () => aws.store.putText("cut/changing", "b".repeat(200 * KB)),
    );
    const reading = store.getText("cut/changing");
    await expect(reading).rejects.toThrow(/object changed while being read/);
  });

  it("gives up after the retry bound when no response gets a byte through", async () => {
    await aws.store.putText("cut/always", "c".repeat(100 * KB));
    proxy.cutBodies((r) => r.url.includes("cut/always"), 0, 1000);
    await expect(store.getText("cut/always")).rejects.toThrow();
    // The first GET and five resumes (the SDK may retry a resume that fails before its body).
    expect(gets("cut/always").length).toBeGreaterThanOrEqual(6);
    expect(gets("cut/always").length).toBeLessThanOrEqual(6 * 3);
  });
});
