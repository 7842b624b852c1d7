import { describe, expect, it } from "vitest";
import { coalescedLookup, type HostLookup } from "./egress-connector.ts";

describe("coalescedLookup", () => {
  it("answers concurrent lookups of one name with one resolver call, and resolves afresh afterwards", async () => {
    const calls: string[] = [];
    const answers = [[{ address: "192.0.2.1" }], [{ address: "192.0.2.2" }]];
    const lookup = coalescedLookup(async (hostname) => {
      calls.push(hostname);
      return answers[calls.length - 1] ?? [];
    });
    const first = await Promise.all(Array.from({ length: 200 }, () => lookup("api.test")));
    expect(calls).toEqual(["api.test"]);
    expect(first.every((a) => a[0]?.address === "192.0.2.1")).toBe(true);
    // Settled: nothing cached, the next connection asks the resolver again.
    expect(await lookup("api.test")).toEqual([{ address: "192.0.2.2" }]);
    expect(calls).toEqual(["api.test", "api.test"]);
  });

  it("keeps names apart and lets a failure reach every waiter once, not later callers", async () => {
    let fail = true;
    const calls: string[] = [];
    const base: HostLookup = async (hostname) => {
      calls.push(hostname);
      if (fail)
        throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND" });
      return [{ address: "192.0.2.9" }];
    };
    const lookup = coalescedLookup(base);
    const waiting = [lookup("a.test"), lookup("a.test"), lookup("b.test")];
    const settled = await Promise.allSettled(waiting);
    expect(settled.map((s) => s.status)).toEqual(["rejected", "rejected", "rejected"]);
    expect(calls).toEqual(["a.test", "b.test"]);
    fail = false;
    expect(await lookup("a.test")).toEqual([{ address: "192.0.2.9" }]);
  });

  it("turns a resolver that throws at once into a rejection", async () => {
    const lookup = coalescedLookup(() => {
      throw new Error("resolver broke");
    });
    await expect(lookup("c.test")).rejects.toThrow("resolver broke");
  });
});
