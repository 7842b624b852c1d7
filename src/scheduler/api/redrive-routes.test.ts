/**
 * Operator control routes of the redrive area (issue 14 items 3–5) against a real local S3
 * server: DELETE removes every object of a finished operation and nothing of another's.
 */
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FormPart, multipart, testApp, transformSpec } from "../../../test/support/api.ts";
import { type LocalAws, startLocalAws } from "../../../test/support/local-aws.ts";
import { seedManifest } from "../../../test/support/seed-manifest.ts";
import { systemClock } from "../../shared/clock.ts";
import { keys } from "../../shared/keys.ts";
import { type Manifest, manifestSchema } from "../../shared/schemas/operation.ts";

let env: LocalAws;
let app: FastifyInstance;

beforeAll(async () => {
  env = await startLocalAws("redrive-routes");
  app = testApp(env).app;
});

afterAll(async () => {
  await app?.close();
  await env?.close();
});

async function submit(): Promise<string> {
  const parts: FormPart[] = [
    { name: "spec", value: JSON.stringify(transformSpec()) },
    { name: "file", filename: "p.csv", type: "text/csv", data: "name\nada\nalan\n" },
  ];
  const { payload, headers } = await multipart(parts);
  const res = await app.inject({ method: "POST", url: "/operations", payload, headers });
  expect(res.statusCode).toBe(202);
  return (res.json() as { id: string }).id;
}

async function manifestOf(id: string): Promise<Manifest> {
  const m = await env.store.getJson(keys.manifest(id), manifestSchema);
  if (!m) throw new Error(`no manifest for ${id}`);
  return m;
}

/** Plays a finished run: the records and scratch objects a real run leaves behind. */
async function finishWithObjects(id: string): Promise<void> {
  const m = await manifestOf(id);
  await seedManifest(
    { store: env.store, clock: systemClock },
    { ...m, status: "succeeded", rows: 2, shards: [{ id: "s000000", start: 0, end: 2 }] },
  );
  // A cached terminal view must not outlive the delete: read it once now.
  expect((await app.inject(`/operations/${id}`)).statusCode).toBe(200);
  // Placeholder bodies: only their keys matter to a delete.
  await env.store.putText(keys.done(id, "s000000"), "{}");
  await env.store.putText(keys.attempt(id, "s000000", "a1"), "{}");
  await env.store.putText(keys.fleet(id), "{}");
  await env.store.putText(keys.result(id), "xlsx");
  await env.store.putText(keys.cost(id), "{}");
  await env.store.putText(keys.shardInput(id, "s000000"), "{}");
  await env.store.putText(keys.checkpoint(id, "s000000"), "{}");
  await env.store.putText(keys.chunk(id, "s000000", 0, 2), "{}");
}

async function objectsOf(id: string): Promise<string[]> {
  const out: string[] = [];
  for (const prefix of keys.operationPrefixes(id)) out.push(...(await env.store.list(prefix)));
  return out;
}

describe("DELETE /operations/:id", () => {
  it("409 naming the status while the operation is not finished; nothing is deleted", async () => {
    const id = await submit();
    const before = await objectsOf(id);
    const res = await app.inject({ method: "DELETE", url: `/operations/${id}` });
    expect(res.statusCode).toBe(409);
    expect(res.json()).toMatchObject({ error: { code: "NOT_READY" } });
    expect((res.json() as { error: { message: string } }).error.message).toMatch(/queued/);
    expect(await objectsOf(id)).toEqual(before);
  });

  it("204 removes every object under both prefixes; then 404; another operation is untouched", async () => {
    const id = await submit();
    const other = await submit();
    await finishWithObjects(id);
    await finishWithObjects(other);
    expect((await objectsOf(id)).length).toBeGreaterThanOrEqual(10);
    const otherBefore = await objectsOf(other);

    const res = await app.inject({ method: "DELETE", url: `/operations/${id}` });
    expect(res.statusCode).toBe(204);
    expect(await objectsOf(id)).toEqual([]);
    expect(await objectsOf(other)).toEqual(otherBefore);
    expect((await app.inject(`/operations/${id}`)).statusCode).toBe(404);
    const again = await app.inject({ method: "DELETE", url: `/operations/${id}` });
    expect(again.statusCode).toBe(404);
    const list = (await app.inject("/operations")).json() as { operations: { id: string }[] };
    expect(list.operations.map((o) => o.id)).not.toContain(id);
  });

  it("400 for something that is not an id", async () => {
    const res = await app.inject({ method: "DELETE", url: "/operations/..%2Fx" });
    expect(res.statusCode).toBe(400);
  });
});

describe("PATCH /operations/:id", () => {
  const patch = (id: string, body: unknown) =>
    app.inject({ method: "PATCH", url: `/operations/${id}`, payload: body as object });

  it("changes caps on a live operation through the manifest; fields left out are kept", async () => {
    const id = await submit();
    const res = await patch(id, { maxInstances: 7, maxHourlyUsd: 1.5 });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ id, status: "queued", caps: { maxInstances: 7 } });
    const again = await patch(id, { concurrency: 40, priority: 5 });
    expect(again.statusCode).toBe(200);
    expect((await manifestOf(id)).caps).toEqual({
      maxInstances: 7,
      maxHourlyUsd: 1.5,
      concurrency: 40,
      priority: 5,
    });
    expect((await manifestOf(id)).status).toBe("queued");
  });

  it("400 naming the field for an unknown field, a bad value or an empty body", async () => {
    const id = await submit();
    for (const [body, field] of [
      [{ maxInstance: 3 }, /maxInstance: unknown field/],
      [{ maxInstances: -1 }, /maxInstances/],
      [{ concurrency: 1000 }, /concurrency/],
      [{ priority: 1.5 }, /priority/],
      [{}, /at least one/],
    ] as const) {
      const res = await patch(id, body);
      expect(res.statusCode).toBe(400);
      expect((res.json() as { error: { message: string } }).error.message).toMatch(field);
    }
    expect((await manifestOf(id)).caps).toBeUndefined();
  });

  it("409 naming the status on a finished operation; 404 for an unknown one", async () => {
    const id = await submit();
    await finishWithObjects(id);
    const res = await patch(id, { maxInstances: 3 });
    expect(res.statusCode).toBe(409);
    expect((res.json() as { error: { message: string } }).error.message).toMatch(/succeeded/);
    expect((await patch("op-nope", { maxInstances: 3 })).statusCode).toBe(404);
  });
});

describe("POST /operations/:id/retry", () => {
  const retry = (id: string, body?: unknown) =>
    app.inject({
      method: "POST",
      url: `/operations/${id}/retry`,
      ...(body === undefined ? {} : { payload: body as object }),
    });

  /** Plays a run that ended with error rows (only the status and shards matter here). */
  async function endWith(id: string, status: "succeeded-with-failures" | "failed" | "succeeded") {
    const m = await manifestOf(id);
    await seedManifest(
      { store: env.store, clock: systemClock },
      {
        ...m,
        status,
        rows: 2,
        shards: [{ id: "s000000", start: 0, end: 2 }],
        result: { key: keys.result(id), rows: 2, errorRows: 1, columns: [] },
        finishedAt: m.createdAt,
      },
    );
  }

  it("202 with the view: running again, the retry recorded with its changed options", async () => {
    const id = await submit();
    await endWith(id, "succeeded-with-failures");
    const res = await retry(id, { options: { batchSize: 8 } });
    expect(res.statusCode).toBe(202);
    const view = res.json() as {
      status: string;
      result?: unknown;
      retries: { number: number; options: Record<string, unknown>; rows: number | null }[];
    };
    expect(view.status).toBe("running");
    expect(view.result).toBeUndefined();
    expect(view.retries).toHaveLength(1);
    expect(view.retries[0]).toMatchObject({
      number: 1,
      options: { module: "upper", batchSize: 8 },
      rows: null,
    });
    const m = await manifestOf(id);
    expect(m.status).toBe("running");
    expect(m.retries?.[0]?.options).toMatchObject({ module: "upper", batchSize: 8 });
    // The spec stays as submitted: the retry's options are its own.
    expect(m.spec.task.options).toMatchObject({ module: "upper", batchSize: 64 });
    // Running now: a second retry is refused, naming the status.
    const again = await retry(id);
    expect(again.statusCode).toBe(409);
    expect((again.json() as { error: { message: string } }).error.message).toMatch(/running/);
  });

  it("a failed operation is retried too, with no body at all", async () => {
    const id = await submit();
    await endWith(id, "failed");
    const res = await retry(id);
    expect(res.statusCode).toBe(202);
    expect((await manifestOf(id)).retries).toHaveLength(1);
  });

  it("400 naming the field for an unknown or bad task option, or an unknown body field", async () => {
    const id = await submit();
    await endWith(id, "succeeded-with-failures");
    for (const [body, field] of [
      [{ options: { batchSze: 8 } }, /body options\.batchSze: unknown field/],
      [{ options: { batchSize: 0 } }, /body options\.batchSize/],
      [{ options: { module: "../x" } }, /body options\.module/],
      [{ option: {} }, /option/],
    ] as const) {
      const res = await retry(id, body);
      expect(res.statusCode).toBe(400);
      expect((res.json() as { error: { message: string } }).error.message).toMatch(field);
    }
    const m = await manifestOf(id);
    expect(m.status).toBe("succeeded-with-failures");
    expect(m.retries).toBeUndefined();
  });

  it("409 naming the status unless it ended with error rows; 404 for an unknown id", async () => {
    const queued = await submit();
    const res = await retry(queued);
    expect(res.statusCode).toBe(409);
    expect((res.json() as { error: { message: string } }).error.message).toMatch(/queued/);
    const done = await submit();
    await endWith(done, "succeeded");
    const ok = await retry(done);
    expect(ok.statusCode).toBe(409);
    expect((ok.json() as { error: { message: string } }).error.message).toMatch(/succeeded/);
    expect((await retry("op-nope")).statusCode).toBe(404);
  });
});
