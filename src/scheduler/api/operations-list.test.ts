import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testApp } from "../../../test/support/api.ts";
import { type LocalAws, startLocalAws } from "../../../test/support/local-aws.ts";
import { splitManifest } from "../../../test/support/manifests.ts";
import { seedManifest } from "../../../test/support/seed-manifest.ts";
import { systemClock } from "../../shared/clock.ts";
import type { LifecycleStatus } from "../../shared/schemas/operation.ts";
import { newOperationId } from "../operations.ts";

let env: LocalAws;
/** Newest first, as the API lists them. */
const seeded: { id: string; status: LifecycleStatus }[] = [];

beforeAll(async () => {
  env = await startLocalAws("operations-list");
  const statuses: LifecycleStatus[] = ["running", "succeeded", "running", "paused", "running"];
  const t0 = Date.parse("2026-12-01T00:00:00Z");
  for (const [k, status] of statuses.entries()) {
    const id = newOperationId(t0 + k * 1000);
    const now = new Date(t0 + k * 1000).toISOString();
    await seedManifest({ store: env.store, clock: systemClock }, splitManifest(id, 1, now, status));
    seeded.unshift({ id, status });
  }
});
afterAll(async () => {
  await env?.close();
});

type Page = { operations: { id: string; status: string }[]; nextCursor?: string };

describe("GET /operations: filters and cursor", () => {
  it("pages through every operation exactly once with the opaque cursor", async () => {
    const { app } = testApp(env);
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const q = cursor === undefined ? "" : `&cursor=${encodeURIComponent(cursor)}`;
      const res = await app.inject(`/operations?limit=2${q}`);
      expect(res.statusCode).toBe(200);
      const page = res.json() as Page;
      expect(page.operations.length).toBeLessThanOrEqual(2);
      seen.push(...page.operations.map((o) => o.id));
      cursor = page.nextCursor;
      pages++;
    } while (cursor !== undefined && pages < 10);
    expect(seen).toEqual(seeded.map((s) => s.id));
    expect(pages).toBe(3);
    await app.close();
  });

  it("filters by status, and pages within the filter", async () => {
    const { app } = testApp(env);
    const running = seeded.filter((s) => s.status === "running").map((s) => s.id);
    const first = (await app.inject("/operations?status=running&limit=2")).json() as Page;
    expect(first.operations.map((o) => o.id)).toEqual(running.slice(0, 2));
    expect(first.operations.every((o) => o.status === "running")).toBe(true);
    const cursor = encodeURIComponent(first.nextCursor ?? "");
    const second = (await app.inject(`/operations?status=running&cursor=${cursor}`)).json() as Page;
    expect(second.operations.map((o) => o.id)).toEqual(running.slice(2));
    expect(second.nextCursor).toBeUndefined();
    const paused = (await app.inject("/operations?status=paused")).json() as Page;
    expect(paused.operations.map((o) => o.id)).toEqual(
      seeded.filter((s) => s.status === "paused").map((s) => s.id),
    );
    await app.close();
  });

  it("400 naming the field: unknown parameter, bad status, bad limit, forged cursor", async () => {
    const { app } = testApp(env);
    const cases: [string, RegExp][] = [
      ["/operations?sort=asc", /querystring.*sort/],
      ["/operations?status=done", /querystring\.status/],
      ["/operations?limit=abc", /querystring\.limit/],
      ["/operations?limit=1001", /querystring\.limit/],
      [`/operations?cursor=${Buffer.from("v1:../x").toString("base64url")}`, /querystring\.cursor/],
    ];
    for (const [url, message] of cases) {
      const res = await app.inject(url);
      expect({ url, status: res.statusCode }).toEqual({ url, status: 400 });
      expect(res.json().error.message).toMatch(message);
    }
    await app.close();
  });
});
