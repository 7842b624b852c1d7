import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type HttpSource, startHttpSource } from "../../../test/support/http-source.ts";
import { ConnectionStack } from "./connection-stack.ts";

let source: HttpSource;
let origin: string;

beforeAll(async () => {
  source = await startHttpSource((_req, res) => res.end("ok"));
  origin = source.url;
});

afterAll(() => source.close());

describe("ConnectionStack", () => {
  it("hands out the connection given back last, and opens one only when none is idle", async () => {
    const stack = new ConnectionStack(origin, {});
    const a = stack.take();
    const b = stack.take();
    expect(a).not.toBe(b);
    const res = await a.request({ path: "/", method: "GET" });
    expect(await res.body.text()).toBe("ok");
    stack.give(b);
    stack.give(a);
    expect(stack.take()).toBe(a);
    expect(stack.take()).toBe(b);
    expect(stack.size).toBe(2);
    stack.give(a);
    stack.give(b);
    await stack.close();
    expect(a.closed).toBe(true);
    expect(b.closed).toBe(true);
  });

  it("forgets a connection that was destroyed, given back or idle", async () => {
    const stack = new ConnectionStack(origin, {});
    const a = stack.take();
    const b = stack.take();
    stack.give(a);
    await b.destroy();
    stack.give(b);
    expect(stack.size).toBe(1);
    await a.destroy();
    const c = stack.take();
    expect(c).not.toBe(a);
    expect(stack.size).toBe(1);
    await stack.close();
    expect(() => stack.take()).toThrow("connection stack is closed");
  });
});
