/**
 * CRC-32 of a concatenation from the parts' CRC-32s and lengths, without the bytes: zlib's
 * `crc32_combine` (zlib 1.2.12+, multiplication modulo the CRC polynomial), which Node does not
 * expose. The merger needs it to name the CRC of a sheet stitched from segments it never
 * inflates. Checked against `zlib.crc32` of the concatenation by property tests.
 */

/** The reflected CRC-32 polynomial (zlib's, the zip format's). */
const POLY = 0xedb88320;

/** a × b modulo the polynomial (reflected bit order: x^0 is the top bit). */
function multModP(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  let bb = b >>> 0;
  for (;;) {
    if ((a & m) !== 0) {
      p = (p ^ bb) >>> 0;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    bb = bb & 1 ? ((bb >>> 1) ^ POLY) >>> 0 : bb >>> 1;
  }
  return p >>> 0;
}

/** X2N[k] = x^(2^k) modulo the polynomial. */
const X2N: number[] = (() => {
  const table: number[] = [];
  let p = 0x40000000; // x^1
  table.push(p);
  for (let n = 1; n < 32; n++) {
    p = multModP(p, p);
    table.push(p);
  }
  return table;
})();

/** x^(n × 2^k) modulo the polynomial; `n` up to 2^53. */
function x2nModP(n: number, k: number): number {
  let p = 0x80000000; // x^0
  let rest = n;
  let j = k;
  while (rest > 0) {
    if (rest % 2 === 1) p = multModP(X2N[j & 31]!, p);
    rest = Math.floor(rest / 2);
    j++;
  }
  return p;
}

/** CRC-32 of A followed by B, from crc(A), crc(B) and B's length in bytes. */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  if (!Number.isSafeInteger(lengthB) || lengthB < 0) {
    throw new RangeError(`length ${lengthB} is not a byte count`);
  }
  return (multModP(x2nModP(lengthB, 3), crcA >>> 0) ^ (crcB >>> 0)) >>> 0;
}
