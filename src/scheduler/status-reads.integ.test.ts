/**
 * A status polled by many costs one read a second: `GET /operations/:id` (and the events stream)
 * share one read of an operation's records per `statusTtlMs`, whoever asks; who may see it is
 * still checked per caller, and a change made through the service shows at once. Requests are
 * counted by a proxy in front of the real local S3 server; time is a fake clock.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeClock } from "../../test/support/fake-clock.ts";
import { splitManifest } from "../../test/support/manifests.ts";
import { type ProxiedAws, startProxiedAws } from "../../test/support/proxied-aws.ts";
import { seedManifest } from "../../test/support/seed-manifest.ts";
import { NotFoundError } from "../shared/errors.ts";
import { shardIdFor } from "../shared/keys.ts";
import { silentLogger } from "../shared/logger.ts";
import { commitDone } from "../shared/records/done-marker.ts";
import { OperationService, STATUS_SHARED_MS } from "./operations.ts";

let env: ProxiedAws;
beforeAll(async () => {
  env = await startProxiedAws("status-reads");
});
afterAll(async () => {
  await env?.close();
});

describe("status reads shared by pollers", () => {
  it("many polls within a second cost one read; a later poll or a change reads again", async () => {
    const clock = new FakeClock({ start: Date.parse("2025-06-01T12:00:00.000Z") });
    const operations = new OperationService(
      { store: env.store, logger: silentLogger(), clock },
      { statusTtlMs: STATUS_SHARED_MS },
    );
    const op = "op-polled";
    const iso = new Date(clock.now()).toISOString();
    // Seeded directly (not through the proxy): only the service's reads are counted.
    await seedManifest(
      { store: env.aws.store, clock },
      { ...splitManifest(op, 3, iso), tenant: "acme" },
    );
    const reads = () =>
      env.proxy.seen.filter((r) => decodeURIComponent(r.url).includes(`/${op}/`)).length;
    const before = reads();

    // Another tenant's cold poll reads the manifest alone, as an unknown id does.
    await expect(
      operations.get(op, undefined, { tenant: "other", role: "member" }),
    ).rejects.toThrow(NotFoundError);
    expect(reads() - before).toBe(1);
    await clock.advance(1000);

    const first = await operations.get(op);
    expect(first.shards).toMatchObject({ total: 3, done: 0 });
    const once = reads() - before;
    expect(once).toBeGreaterThan(0);
    // Nine more pollers (together and one after another) within the second: no request.
    const views = await Promise.all(Array.from({ length: 5 }, () => operations.get(op)));
    for (let k = 0; k < 4; k++) views.push(await operations.get(op));
    for (const v of views) expect(v).toEqual(first);
    expect(reads() - before).toBe(once);
    // Another tenant's poller learns nothing from the shared read: not found, as an unknown id.
    await expect(
      operations.get(op, undefined, { tenant: "other", role: "member" }),
    ).rejects.toThrow(NotFoundError);
    expect((await operations.get(op, undefined, { tenant: "acme", role: "member" })).id).toBe(op);
    expect(reads() - before).toBe(once);

    // A shard commits: the next poll after the second sees it.
    await commitDone(
      { store: env.aws.store, clock },
      { operationId: op, shardId: shardIdFor(0), attemptId: "a1", instanceId: "i-1" },
      { rows: 10, errorRows: 0, columns: [], chunks: [] },
      new AbortController().signal,
    );
    await clock.advance(STATUS_SHARED_MS - 1);
    expect((await operations.get(op)).shards.done).toBe(0);
    await clock.advance(1);
    expect((await operations.get(op)).shards.done).toBe(1);
    const twice = reads() - before;
    expect(twice).toBeGreaterThan(once);

    // A change through the service (pause) is shown at once, not a second later.
    const paused = await operations.control(op, "pause", undefined);
    expect(paused.view.status).toBe("paused");
    expect((await operations.get(op)).status).toBe("paused");
  });
});
