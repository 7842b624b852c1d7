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
});
