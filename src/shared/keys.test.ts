import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  keys,
  matchesIamPattern,
  OPERATIONS_PREFIX,
  parseBudgetPeerKey,
  parseShardKey,
  SCRATCH_PREFIX,
  shardIdFor,
  WORKER_WRITABLE_PATTERNS,
} from "./keys.ts";

const op = "op-1";
const shard = shardIdFor(3);
const durable = [
  keys.manifest(op),
  keys.fleet(op),
  keys.done(op, shard),
  keys.attempt(op, shard, "a1"),
  keys.result(op),
  keys.cost(op),
];
const temporary = [
  keys.input(op, "xlsx"),
  keys.input(op, "csv"),
  keys.shardInput(op, shard),
  keys.shardSheetSlice(op, shard),
  keys.sliceContext(op),
  keys.sharedStrings(op),
  keys.checkpoint(op, shard),
  keys.chunk(op, shard, 0, 100),
];

describe("key layout", () => {
  it("keeps durable records under operations/{op}/", () => {
    for (const key of durable) expect(key.startsWith(`operations/${op}/`)).toBe(true);
  });

  it("keeps temporary objects under scratch/{op}/ and none under operations/", () => {
    // What makes a lifecycle rule on scratch/ safe: it can only expire temporaries.
    for (const key of temporary) {
      expect(key.startsWith(`scratch/${op}/`)).toBe(true);
      expect(key.startsWith(OPERATIONS_PREFIX)).toBe(false);
    }
    for (const key of durable) expect(key.startsWith(SCRATCH_PREFIX)).toBe(false);
  });

  it("names both prefixes as what an operation owns", () => {
    const prefixes = keys.operationPrefixes(op);
    expect(prefixes).toEqual([`operations/${op}/`, `scratch/${op}/`]);
    for (const key of [...durable, ...temporary]) {
      expect(prefixes.filter((p) => key.startsWith(p))).toHaveLength(1);
    }
  });

  it("refuses ids that could escape their prefix", () => {
    expect(() => keys.manifest("../x")).toThrow(/invalid operation id/);
    expect(() => keys.input("../x", "csv")).toThrow(/invalid operation id/);
    expect(() => keys.done("op", "a/b")).toThrow(/invalid shard id/);
    expect(() => keys.checkpoint("op", "a/b")).toThrow(/invalid shard id/);
    expect(() => keys.attempt("op", "s", "..")).toThrow(/invalid attempt id/);
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

  it("parses shard keys of either prefix back", () => {
    const shardId = shardIdFor(12);
    expect(parseShardKey(keys.done("op-9", shardId))).toEqual({
      scratch: false,
      operationId: "op-9",
      shardId,
      rest: "done.json",
    });
    expect(parseShardKey(keys.attempt("op-9", shardId, "a1"))).toMatchObject({
      scratch: false,
      rest: "attempts/a1.json",
    });
    expect(parseShardKey(keys.shardInput("op-9", shardId))).toEqual({
      scratch: true,
      operationId: "op-9",
      shardId,
      rest: "input.ndjson",
    });
    expect(parseShardKey(keys.chunk("op-9", shardId, 0, 5))).toMatchObject({
      scratch: true,
      rest: "chunks/0000000000-0000000005.ndjson",
    });
    expect(parseShardKey("operations/op/manifest.json")).toBeUndefined();
    expect(parseShardKey(keys.input("op", "csv"))).toBeUndefined();
    expect(parseShardKey("elsewhere/op/shards/s000000/done.json")).toBeUndefined();
  });
});

describe("what a worker may write (IAM patterns)", () => {
  const writable = (key: string) =>
    Object.values(WORKER_WRITABLE_PATTERNS).some((p) => matchesIamPattern(p, key));

  it("covers every key a worker writes: scratch objects, attempts, commit markers", () => {
    for (const key of [
      keys.checkpoint(op, shard),
      keys.chunk(op, shard, 0, 100),
      keys.shardInput(op, shard),
      keys.attempt(op, shard, "a1"),
      keys.done(op, shard),
      keys.budgetPeer(op, "i-0abc", "m1"),
      keys.budgetPeerLeft(op, "ip-10-0-0-1.ec2.internal", "m1"),
      keys.workerReport("ip-10-0-0-1.ec2.internal-4242"),
    ]) {
      expect(writable(key), key).toBe(true);
    }
  });

  it("names budget-peer records by instance and membership, and parses them back", () => {
    const record = keys.budgetPeer(op, "ip-10-0-0-1.ec2.internal", "ab12cd34");
    expect(record).toBe(`scratch/${op}/budget-peers/iip-10-0-0-1_ec2_internal-ab12cd34.json`);
    expect(parseBudgetPeerKey(record)).toEqual({
      member: "iip-10-0-0-1_ec2_internal-ab12cd34",
      left: false,
    });
    expect(
      parseBudgetPeerKey(keys.budgetPeerLeft(op, "ip-10-0-0-1.ec2.internal", "ab12cd34")),
    ).toEqual({ member: "iip-10-0-0-1_ec2_internal-ab12cd34", left: true });
    expect(parseBudgetPeerKey(keys.checkpoint(op, shard))).toBeUndefined();
  });

  it("covers no record another owner writes, for any ids", () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_-]{0,20}$/),
        fc.integer({ min: 0, max: 999_999 }),
        (id, n) => {
          for (const key of [keys.manifest(id), keys.fleet(id), keys.result(id), keys.cost(id)]) {
            expect(writable(key), key).toBe(false);
          }
          expect(writable(keys.done(id, shardIdFor(n)))).toBe(true);
        },
      ),
    );
  });
});
