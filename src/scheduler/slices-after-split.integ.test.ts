/**
 * src/shared/slices.ts on the splitter's output (local S3 server), the cases the splitter's
 * tests do not reach: a read before the split wrote the operation's slice context does not stick (a worker that got
 * an early message reads the XML slice once it lands), and a shard of an xlsx operation without
 * an XML slice (a retry shard) is read from its NDJSON one.
 */
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalAws, startLocalAws } from "../../test/support/local-aws.ts";
import { testManifest } from "../../test/support/manifests.ts";
import { simpleXlsx } from "../../test/support/workbooks.ts";
import { keys } from "../shared/keys.ts";
import { silentLogger } from "../shared/logger.ts";
import { decodeCell, encodeCell, type InputRow } from "../shared/schemas/cells.ts";
import {
  readInputRows,
  SliceContexts,
  SliceMissingError,
  type SliceRef,
} from "../shared/slices.ts";
import { splitOperation } from "./splitter.ts";

let aws: LocalAws;
beforeAll(async () => {
  aws = await startLocalAws("slices");
});
afterAll(async () => {
  await aws?.close();
});

async function read(contexts: SliceContexts, slice: SliceRef): Promise<unknown[][]> {
  const rows: InputRow[] = [];
  for await (const row of readInputRows(aws.store, contexts, slice, 1)) rows.push(row);
  return rows.map((r) => [r.i, decodeCell(r.c[0]!)]);
}

async function split(op: string) {
  const manifest = testManifest(op, { status: "splitting", headers: ["id"], shardSize: 2 });
  const data = await simpleXlsx([["id"], ["a"], ["b"], ["c"]]);
  await aws.store.upload(manifest.input.key, Readable.from([data]));
  return splitOperation(
    { store: aws.store, queue: aws.queue, logger: silentLogger() },
    { manifest, workQueueUrl: aws.resources.queues.work },
  );
}

describe("readInputRows (local S3)", () => {
  it("a read before the split is SliceMissingError, and not remembered: the next read finds the XML slice", async () => {
    const op = "op-slices-early";
    const contexts = new SliceContexts({ store: aws.store });
    const slice = { operationId: op, shardId: "s000000", start: 0, end: 2 };
    await expect(read(contexts, slice)).rejects.toBeInstanceOf(SliceMissingError);
    await split(op);
    expect(await aws.store.getText(keys.shardSheetSlice(op, "s000000"))).toContain("<row");
    expect(await read(contexts, slice)).toEqual([
      [0, "a"],
      [1, "b"],
    ]);
  });

  it("a shard of an xlsx operation without an XML slice is read from its NDJSON slice", async () => {
    const op = "op-slices-retry";
    await split(op);
    const lines = [{ i: 1, c: [encodeCell("again")] }].map((r) => `${JSON.stringify(r)}\n`);
    await aws.store.putText(keys.shardInput(op, "s000000-r1"), lines.join(""));
    const contexts = new SliceContexts({ store: aws.store });
    expect(
      await read(contexts, { operationId: op, shardId: "s000000-r1", start: 0, end: 2 }),
    ).toEqual([[1, "again"]]);
    // The operation's own shards still read their XML slices.
    expect(await read(contexts, { operationId: op, shardId: "s000001", start: 2, end: 3 })).toEqual(
      [[2, "c"]],
    );
  });
});
