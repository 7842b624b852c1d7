import { crc32 } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { crc32Combine } from "./crc32-combine.ts";

describe("crc32Combine", () => {
  it("equals zlib.crc32 of the concatenation, for any two byte strings", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 3000 }), (a, b) => {
        const whole = crc32(Buffer.concat([a, b]));
        expect(crc32Combine(crc32(a), crc32(b), b.length)).toBe(whole);
      }),
      { numRuns: 300 },
    );
  });

  it("folds many parts in order, as the merger does", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 500 }), { maxLength: 12 }), (parts) => {
        let crc = 0;
        for (const part of parts) crc = crc32Combine(crc, crc32(part), part.length);
        expect(crc).toBe(crc32(Buffer.concat(parts)));
      }),
    );
  });

  it("handles a part longer than 4 GiB without its bytes (checked by the linearity of CRC-32)", () => {
    // crc(A‖Z) where Z is n zero bytes, two ways: combining crc(A) with crc(Z) computed by
    // doubling (crc(Z‖Z) from crc(Z) alone), against combining one zero-length step at a time.
    const a = Buffer.from("shardfleet");
    let zeros = crc32(Buffer.alloc(1)); // crc of 1 zero byte
    let length = 1;
    for (let k = 0; k < 33; k++) {
      zeros = crc32Combine(zeros, zeros, length);
      length *= 2;
    }
    expect(length).toBe(2 ** 33);
    const viaWhole = crc32Combine(crc32(a), zeros, length);
    // The same, the zeros added in two halves.
    const half = crc32Combine(crc32(a), crc32(Buffer.alloc(0)), 0);
    expect(half).toBe(crc32(a));
    let halfZeros = crc32(Buffer.alloc(1));
    let halfLength = 1;
    for (let k = 0; k < 32; k++) {
      halfZeros = crc32Combine(halfZeros, halfZeros, halfLength);
      halfLength *= 2;
    }
    const viaHalves = crc32Combine(
      crc32Combine(crc32(a), halfZeros, halfLength),
      halfZeros,
      halfLength,
    );
    expect(viaWhole).toBe(viaHalves);
    // And at a size zlib can check directly: 1 MiB of zeros.
    let mib = crc32(Buffer.alloc(1));
    let mibLength = 1;
    for (let k = 0; k < 20; k++) {
      mib = crc32Combine(mib, mib, mibLength);
      mibLength *= 2;
    }
    expect(mib).toBe(crc32(Buffer.alloc(2 ** 20)));
  });

  it("refuses a length that is not a byte count", () => {
    expect(() => crc32Combine(0, 0, -1)).toThrow(RangeError);
    expect(() => crc32Combine(0, 0, 1.5)).toThrow(RangeError);
  });
});
