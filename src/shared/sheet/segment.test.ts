import { constants, crc32, inflateRawSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { deflateLast, deflateSegment, SegmentBuilder } from "./segment.ts";

/** Inflates `segment` ended by an empty final block, as the merger's footer ends the stream. */
function inflate(segment: Buffer): string {
  const whole = Buffer.concat([segment, deflateLast("").bytes]);
  return inflateRawSync(whole, { finishFlush: constants.Z_FINISH }).toString("utf8");
}

describe("SegmentBuilder", () => {
  const pieces = ['<row r="2"><c r="A2"/></row>', '<row r="3">é ✓</row>'.repeat(500), "", "x"];

  it("compresses pieces into one segment whose XML, CRC-32 and size are the whole's", () => {
    const builder = new SegmentBuilder();
    for (const piece of pieces) builder.add(piece);
    const segment = builder.finish();
    const whole = Buffer.from(pieces.join(""), "utf8");
    expect(inflate(segment.bytes)).toBe(pieces.join(""));
    expect(segment.crc).toBe(crc32(whole));
    expect(segment.size).toBe(whole.length);
    expect(segment.compressedSize).toBe(segment.bytes.length);
  });

  it("of no piece is the empty segment", () => {
    const segment = new SegmentBuilder().finish();
    expect(segment).toEqual(deflateSegment(""));
    expect(inflate(segment.bytes)).toBe("");
  });
});
