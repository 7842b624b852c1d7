import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { keys, parseShardKey, shardIdFor } from "./keys.ts";

describe("key layout", () => {
  it("puts everything an operation owns under its prefix", () => {
    const op = "op-1";
    const shard = shardIdFor(3);
    for (const key of [
      keys.manifest(op),
      keys.input(op, "xlsx"),
      keys.shardInput(op, shard),
      keys.checkpoint(op, shard),
      keys.chunk(op, shard, 0, 100),
      keys.done(op, shard),
      keys.attempt(op, shard, "a1"),
      keys.result(op),
      keys.cost(op),
      keys.fleet(op),
    ]) {
      expect(key.startsWith(keys.operationPrefix(op))).toBe(true);
    }
  });

  it("refuses ids that could escape their prefix", () => {
    expect(() => keys.manifest("../x")).toThrow(/invalid operation id/);
    expect(() => keys.done("op", "a/b")).toThrow(/invalid shard id/);
  });

  it("orders shard ids and chunk keys as numbers", () => {
    fc.assert(
      fc.property(fc.nat(999_999), fc.nat(999_999), (a, b) => {
        fc.pre(a < b);
        expect(shardIdFor(a) < shardIdFor(b)).toBe(true);
        expect(keys.chunk("op", "s", a, b) < keys.chunk("op", "s", b, b + 1)).toBe(true);
      }),
    );
  });

  it("parses shard keys back", () => {
    expect(parseShardKey(keys.done("op-9", shardIdFor(12)))).toEqual({
      operationId: "op-9",
      shardId: "s000012",
      rest: "done.json",
    });
    expect(parseShardKey("operations/op/manifest.json")).toBeUndefined();
  });
});
