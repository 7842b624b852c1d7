import Fastify from "fastify";
import { describe, expect, it } from "vitest";
import { HEALTH_PID_HEADER } from "../../shared/contracts/api.ts";
import { healthRoutes } from "./health-routes.ts";

describe("GET /healthz", () => {
  it("answers ok and names the answering process in a header", async () => {
    const app = Fastify();
    await app.register(healthRoutes);
    const res = await app.inject("/healthz");
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ ok: true });
    expect(res.headers[HEALTH_PID_HEADER]).toBe(String(process.pid));
    await app.close();
  });

  it("tells the pid only to a caller on the same machine, not to a remote one or through a proxy", async () => {
    const app = Fastify();
    await app.register(healthRoutes);
    const remote = await app.inject({ url: "/healthz", remoteAddress: "203.0.113.9" });
    expect(remote.statusCode).toBe(200);
    expect(remote.json()).toEqual({ ok: true });
    expect(remote.headers[HEALTH_PID_HEADER]).toBeUndefined();
    const proxied = await app.inject({
      url: "/healthz",
      remoteAddress: "127.0.0.1",
      headers: { "x-forwarded-for": "198.51.100.7" },
    });
    expect(proxied.headers[HEALTH_PID_HEADER]).toBeUndefined();
    const forwarded = await app.inject({
      url: "/healthz",
      remoteAddress: "::1",
      headers: { forwarded: "for=198.51.100.7" },
    });
    expect(forwarded.headers[HEALTH_PID_HEADER]).toBeUndefined();
    const local = await app.inject({ url: "/healthz", remoteAddress: "::ffff:127.0.0.1" });
    expect(local.headers[HEALTH_PID_HEADER]).toBe(String(process.pid));
    await app.close();
  });
});
