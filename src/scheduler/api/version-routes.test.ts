import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testApp } from "../../../test/support/api.ts";
import { type LocalAws, startLocalAws } from "../../../test/support/local-aws.ts";

const packageJson = JSON.parse(
  readFileSync(new URL("../../../package.json", import.meta.url), "utf-8"),
) as { name: string; version: string };

let env: LocalAws;
beforeAll(async () => {
  env = await startLocalAws("version-routes");
});
afterAll(async () => {
  await env?.close();
});

describe("GET /version", () => {
  it("answers the package's name and version and the Node.js release it runs on", async () => {
    const { app } = testApp(env);
    const res = await app.inject("/version");
    expect({ status: res.statusCode, body: res.json() }).toEqual({
      status: 200,
      body: { name: "shardfleet", version: packageJson.version, node: process.version },
    });
    await app.close();
  });

  it("needs the bearer token when the API has tokens, unlike /healthz", async () => {
    const token = "5a".repeat(32);
    const { app } = testApp(env, { apiTokens: [token] });
    expect((await app.inject("/version")).statusCode).toBe(401);
    const res = await app.inject({
      url: "/version",
      headers: { authorization: `Bearer ${token}` },
    });
    expect(res.json()).toMatchObject({ version: packageJson.version });
    await app.close();
  });
});
