/**
 * Conditional writes whose answer is lost: the connection drops after the real local S3 server
 * has acted (a fault-injecting proxy in front of it), the SDK retries, and the retry meets its
 * own write as a 412. The store must recognise its own write instead of reporting that someone
 * else won — before, a worker whose commit answer was lost recorded its attempt as `lost` to
 * "another worker" although the done marker named it, and a lease or manifest write looked
 * contended.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { FaultProxy } from "../../test/support/fault-proxy.ts";
import type { LocalAws } from "../../test/support/local-aws.ts";
import { type ProxiedAws, startProxiedAws } from "../../test/support/proxied-aws.ts";
import type { ObjectStore } from "./object-store.ts";

const record = z.object({ owner: z.string(), n: z.number() });

let env: ProxiedAws;
/** The server's own store (setup and checks past the proxy). */
let aws: LocalAws;
let proxy: FaultProxy;
/** The bucket through the proxy. */
let store: ObjectStore;
beforeAll(async () => {
  env = await startProxiedAws("condwrites");
  ({ aws, proxy, store } = env);
});
afterAll(async () => {
  await env?.close();
});

const puts = (key: string) => proxy.seen.filter((r) => r.method === "PUT" && r.url.includes(key));
/** The next PUT of `key` reaches the server, which writes; its answer never comes back. */
const loseNextAnswer = (key: string) =>
  proxy.dropAnswers((r) => r.method === "PUT" && r.url.includes(key), 1);

describe("a conditional write whose answer was lost", () => {
  it("putJsonIfAbsent: the retry's 412 is its own write, so it created the object", async () => {
    loseNextAnswer("lost/create.json");
    const created = await store.putJsonIfAbsent("lost/create.json", record, { owner: "a", n: 1 });
    expect(puts("lost/create.json")).toHaveLength(2); // the SDK retried the dropped request
    expect(created).toBe(true);
    expect(await aws.store.getJson("lost/create.json", record)).toEqual({ owner: "a", n: 1 });
  });

  it("putJsonIfAbsent: someone else's object is still someone else's", async () => {
    await aws.store.putJson("lost/other.json", record, { owner: "b", n: 1 });
    expect(await store.putJsonIfAbsent("lost/other.json", record, { owner: "a", n: 1 })).toBe(
      false,
    );
    expect(await aws.store.getJson("lost/other.json", record)).toEqual({ owner: "b", n: 1 });
  });

  it("putJsonIfMatch: the retry's 412 is its own write, so it is written, with the ETag to go on from", async () => {
    await aws.store.putJson("lost/match.json", record, { owner: "a", n: 1 });
    const read = (await store.getJsonVersioned("lost/match.json", record))!;
    loseNextAnswer("lost/match.json");
    const put = await store.putJsonIfMatch(
      "lost/match.json",
      record,
      { owner: "a", n: 2 },
      read.etag,
    );
    expect(puts("lost/match.json")).toHaveLength(2);
    expect(put.outcome).toBe("written");
    // The ETag it returns is the object's: the next conditional write from it succeeds.
    const next = await store.putJsonIfMatch(
      "lost/match.json",
      record,
      { owner: "a", n: 3 },
      put.outcome === "written" ? put.etag : "",
    );
    expect(next.outcome).toBe("written");
    expect(await aws.store.getJson("lost/match.json", record)).toEqual({ owner: "a", n: 3 });
  });

  it("putJsonIfMatch: another writer's change is still a change", async () => {
    await aws.store.putJson("lost/changed.json", record, { owner: "a", n: 1 });
    const read = (await store.getJsonVersioned("lost/changed.json", record))!;
    await aws.store.putJson("lost/changed.json", record, { owner: "b", n: 2 });
    const put = await store.putJsonIfMatch(
      "lost/changed.json",
      record,
      { owner: "a", n: 2 },
      read.etag,
    );
    expect(put).toEqual({ outcome: "changed" });
  });
});
