import { Validator } from "@seriousme/openapi-schema-validator";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testApp } from "../../../test/support/api.ts";
import { type LocalAws, startLocalAws } from "../../../test/support/local-aws.ts";

let env: LocalAws;
beforeAll(async () => {
  env = await startLocalAws("openapi");
});
afterAll(async () => {
  await env?.close();
});

describe("GET /openapi.json", () => {
  it("is a valid OpenAPI 3.1 document describing the operations routes from their schemas", async () => {
    const { app } = testApp(env);
    const res = await app.inject("/openapi.json");
    expect(res.statusCode).toBe(200);
    const doc = res.json() as {
      openapi: string;
      paths: Record<
        string,
        Record<string, { responses?: Record<string, unknown>; requestBody?: unknown }>
      >;
    };
    const validator = new Validator();
    const result = await validator.validate(doc);
    expect(result.errors).toBeUndefined();
    expect(result.valid).toBe(true);
    expect(validator.version).toBe("3.1");
    expect(doc.openapi).toBe("3.1.0");
    // The view's contract reached the document (a field only the zod contract declares).
    const view = JSON.stringify(doc.paths["/operations/{id}"]?.get?.responses?.["200"]);
    expect(view).toContain("waiting-for-capacity");
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(["/operations", "/operations/{id}", "/operations/{id}/cost"]),
    );
    // The retry route, its body (the task options to change) and its 202 view with `retries`.
    const retry = doc.paths["/operations/{id}/retry"]?.post;
    expect(JSON.stringify(retry?.requestBody)).toContain("options");
    expect(JSON.stringify(retry?.responses?.["202"])).toContain("retries");
    expect(Object.keys(retry?.responses ?? {})).toEqual(
      expect.arrayContaining(["202", "400", "404", "409"]),
    );
    await app.close();
  });

  it("serves a docs page from the scheduler itself, and needs the token like the API", async () => {
    const token = "6b".repeat(32);
    const { app } = testApp(env, { apiTokens: [token] });
    expect((await app.inject("/openapi.json")).statusCode).toBe(401);
    const page = await app.inject({
      url: "/docs",
      headers: { authorization: `Bearer ${token}` },
    });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain("/operations/{id}/events");
    expect(page.body).not.toMatch(/https?:\/\/(cdn|unpkg)/);
    await app.close();
  });
});
