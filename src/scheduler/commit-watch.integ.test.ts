/**
 * The commit watch against the real local S3 server: commit markers written by hand, the way a
 * worker's commit writes them.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalAws, startLocalAws } from "../../test/support/local-aws.ts";
import { waitFor } from "../../test/support/wait.ts";
import { systemClock } from "../shared/clock.ts";
import { keys } from "../shared/keys.ts";
import { silentLogger } from "../shared/logger.ts";
import { CommitWatch } from "./commit-watch.ts";

let aws: LocalAws;
beforeAll(async () => {
  aws = await startLocalAws("commit-watch-test");
});
afterAll(async () => {
  await aws?.close();
});

const commit = (op: string, shard: string) => aws.store.putText(keys.done(op, shard), "{}");

function watch(options: ConstructorParameters<typeof CommitWatch>[1] = {}) {
  return new CommitWatch(
    { store: aws.store, clock: systemClock, logger: silentLogger() },
    { intervalMs: 10, ...options },
  );
}

describe("CommitWatch", () => {
  it("calls back once every pending shard has its commit marker, not before", async () => {
    const w = watch();
    const op = "op-watch-all";
    let written = 0;
    let seenAfter: number | undefined;
    const abort = new AbortController();
    expect(
      w.watch(op, ["s000001", "s000002", "s000003"], () => (seenAfter = written), abort.signal),
    ).toBe(true);
    // Watched once: a second pass's call starts nothing.
    expect(w.watch(op, ["s000003"], () => {}, abort.signal)).toBe(false);
    for (const shard of ["s000003", "s000001", "s000002"]) {
      await commit(op, shard);
      written++;
    }
    await waitFor("the callback", async () => seenAfter);
    expect(seenAfter).toBe(3);
    await waitFor("the watch to end", async () => (w.watching(op) ? undefined : true));
  });

  it("watches only the last few shards, and ends on abort without calling back", async () => {
    const w = watch({ maxShards: 2 });
    const abort = new AbortController();
    let called = false;
    expect(
      w.watch(
        "op-watch-many",
        ["s000001", "s000002", "s000003"],
        () => (called = true),
        abort.signal,
      ),
    ).toBe(false);
    expect(w.watching("op-watch-many")).toBe(false);
    expect(w.watch("op-watch-abort", ["s000001"], () => (called = true), abort.signal)).toBe(true);
    abort.abort(new Error("scheduler stopping"));
    await waitFor("the watch to end", async () =>
      w.watching("op-watch-abort") ? undefined : true,
    );
    await commit("op-watch-abort", "s000001");
    expect(called).toBe(false);
  });

  it("gives up after maxMs while a marker is missing (the pass notices the commit anyway)", async () => {
    const w = watch({ maxMs: 50 });
    let called = false;
    expect(
      w.watch("op-watch-late", ["s000001"], () => (called = true), new AbortController().signal),
    ).toBe(true);
    await waitFor("the watch to give up", async () =>
      w.watching("op-watch-late") ? undefined : true,
    );
    expect(called).toBe(false);
  });
});
