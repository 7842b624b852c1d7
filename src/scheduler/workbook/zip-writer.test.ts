import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { findOpenpyxl, readZipChecked } from "../../../test/support/xlsx-readers.ts";
import { deflateLast, deflateSegment } from "../../shared/sheet/segment.ts";
import { crc32Combine } from "./crc32-combine.ts";
import { ZipWriter } from "./zip-writer.ts";

/** A zip with one small entry and one stitched from `pieces` (sync-flushed, then a final one). */
async function stitchedZip(pieces: string[], zip64: boolean): Promise<Buffer> {
  const out: Buffer[] = [];
  const zip = new ZipWriter(
    async (b) => void out.push(b),
    new Date(Date.UTC(2026, 11, 3, 12, 30, 10)),
  );
  await zip.addEntry("small.txt", "hello");
  const entry = await zip.openEntry("dir/stitched.xml", { zip64 });
  let crc = 0;
  let size = 0;
  for (const [k, piece] of pieces.entries()) {
    const seg = k === pieces.length - 1 ? deflateLast(piece) : deflateSegment(piece);
    crc = crc32Combine(crc, seg.crc, seg.size);
    size += seg.size;
    await entry.write(seg.bytes);
  }
  await entry.end({ crc, size });
  await zip.finish();
  return Buffer.concat(out);
}

const python = await findOpenpyxl();

describe("ZipWriter", () => {
  it("stitches independently compressed segments into one entry that inflates to their concatenation, CRC-32 right", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.string({ unit: "binary", maxLength: 2000 }), { minLength: 1, maxLength: 8 }),
        fc.boolean(),
        async (pieces, zip64) => {
          const entries = await readZipChecked(await stitchedZip(pieces, zip64));
          expect(entries.get("small.txt")?.bytes.toString()).toBe("hello");
          expect(entries.get("dir/stitched.xml")?.bytes.toString("utf8")).toBe(pieces.join(""));
        },
      ),
      { numRuns: 60 },
    );
  });

  it("refuses a second entry while one is open, and anything after finish", async () => {
    const zip = new ZipWriter(async () => {}, new Date());
    const entry = await zip.openEntry("a", { zip64: false });
    await expect(zip.addEntry("b", "x")).rejects.toThrow("still open");
    await entry.end({ crc: 0, size: 0 });
    await zip.finish();
    await expect(zip.addEntry("c", "x")).rejects.toThrow("finished");
  });

  // Debian's python3-openpyxl pulls in Python; any python3 with openpyxl will do.
  it.skipIf(!python)(
    "is a zip Python's zipfile tests clean (every CRC), plain and Zip64",
    async () => {
      const dir = await mkdtemp(path.join(tmpdir(), "sf-zip-"));
      try {
        for (const zip64 of [false, true]) {
          const file = path.join(dir, `z${zip64}.zip`);
          await writeFile(file, await stitchedZip(["<a>", "é".repeat(5000), "</a>"], zip64));
          const { stdout } = await promisify(execFile)(python!, [
            "-c",
            "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); print(z.testzip(), len(z.read('dir/stitched.xml')))",
            file,
          ]);
          expect(stdout.trim()).toBe(`None ${3 + 10_000 + 4}`);
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});
