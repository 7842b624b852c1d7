/**
 * `shardfleet rm` against the API over a real local S3: one line on success, one line and exit 1
 * naming the status while the operation runs, and for an unknown id.
 */
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { systemClock } from "../../src/shared/clock.ts";
import { keys } from "../../src/shared/keys.ts";
import { manifestSchema } from "../../src/shared/schemas/operation.ts";
import { multipart, testApp, transformSpec } from "../support/api.ts";
import { type LocalAws, startLocalAws } from "../support/local-aws.ts";
import { CLI, runNode } from "../support/local-cli.ts";
import { seedManifest } from "../support/seed-manifest.ts";

const run = (args: string[]) => runNode([...CLI, ...args]);

describe("shardfleet rm", () => {
  let env: LocalAws;
  let api: FastifyInstance;
  let url: string;
  beforeAll(async () => {
    env = await startLocalAws("cli-rm-test");
    api = testApp(env).app;
    url = await api.listen({ host: "127.0.0.1", port: 0 });
  });
  afterAll(async () => {
    await api?.close();
    await env?.close();
  });

  it("refuses a running operation (exit 1, one line), deletes a finished one, then 404", async () => {
    const { payload, headers } = await multipart([
      { name: "spec", value: JSON.stringify(transformSpec()) },
      { name: "file", filename: "p.csv", type: "text/csv", data: "name\nada\n" },
    ]);
    const res = await api.inject({ method: "POST", url: "/operations", payload, headers });
    const { id } = res.json() as { id: string };

    const running = await run(["rm", id, "--api", url]);
    expect(running.code).toBe(1);
    expect(running.stderr).toMatch(/\(409\).*queued/);
    expect(running.stderr.trim().split("\n")).toHaveLength(1);

    const manifest = await env.store.getJson(keys.manifest(id), manifestSchema);
    await seedManifest(
      { store: env.store, clock: systemClock },
      { ...manifest!, status: "failed" },
    );
    const ok = await run(["rm", id, "--api", url]);
    expect(ok).toMatchObject({ code: 0, stdout: `deleted ${id}\n` });
    for (const prefix of keys.operationPrefixes(id))
      expect(await env.store.list(prefix)).toEqual([]);

    const gone = await run(["rm", id, "--api", url]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/\(404\)/);
  });
});
