/**
 * A zip writer for the output workbook that takes an entry's deflate stream as it comes, already
 * compressed: the merger stitches the sheet from segments workers compressed (no zip library
 * takes pre-compressed data with a CRC it did not compute; yazl and archiver compress
 * themselves). Small entries are compressed here whole. Entries are written in order; a
 * streamed entry's CRC and sizes follow its data in a data descriptor (bit 3), as streaming zip
 * writers (exceljs's archiver) do, and are repeated in the central directory, which readers use.
 *
 * Zip64 (APPNOTE 4.5.3): a streamed entry opened with `zip64` carries the Zip64 extra field in
 * its local header and an 8-byte data descriptor; the central directory gets Zip64 fields for
 * any size or offset ≥ 4 GiB, and the end record a Zip64 end record and locator when needed.
 */
import { constants, crc32, deflateRawSync } from "node:zlib";

const MAX32 = 0xffffffff;
const FLAG_DATA_DESCRIPTOR = 0x0008;
const FLAG_UTF8 = 0x0800;
const METHOD_DEFLATE = 8;
const VERSION_DEFLATE = 20;
const VERSION_ZIP64 = 45;

/** Where the bytes go; resolves once the sink can take more (backpressure). */
export type ZipSink = (bytes: Buffer) => Promise<void>;

export interface ZipEntryStats {
  crc: number;
  /** Uncompressed bytes. */
  size: number;
  compressedSize: number;
}

interface Written extends ZipEntryStats {
  name: Buffer;
  flags: number;
  offset: number;
  zip64: boolean;
}

/** An open streamed entry: its compressed bytes, then `end` with the whole entry's figures. */
export interface ZipEntryStream {
  write(bytes: Buffer): Promise<void>;
  end(stats: Omit<ZipEntryStats, "compressedSize">): Promise<ZipEntryStats>;
}

/** MS-DOS date and time (local fields, 2 s resolution), as zip stores them. */
function dosDateTime(date: Date): { time: number; date: number } {
  const year = Math.max(1980, date.getUTCFullYear());
  return {
    time: (date.getUTCHours() << 11) | (date.getUTCMinutes() << 5) | (date.getUTCSeconds() >> 1),
    date: ((year - 1980) << 9) | ((date.getUTCMonth() + 1) << 5) | date.getUTCDate(),
  };
}

function u64(buf: Buffer, value: number, at: number): void {
  buf.writeBigUInt64LE(BigInt(value), at);
}

export class ZipWriter {
  readonly #sink: ZipSink;
  readonly #dos: { time: number; date: number };
  readonly #entries: Written[] = [];
  #offset = 0;
  #open = false;
  #finished = false;

  /** `modified`: the entries' modification time. */
  constructor(sink: ZipSink, modified: Date) {
    this.#sink = sink;
    this.#dos = dosDateTime(modified);
  }

  /** Bytes written so far. */
  get offset(): number {
    return this.#offset;
  }

  async #emit(bytes: Buffer): Promise<void> {
    this.#offset += bytes.length;
    await this.#sink(bytes);
  }

  #checkIdle(): void {
    if (this.#open) throw new Error("a zip entry is still open");
    if (this.#finished) throw new Error("the zip is finished");
  }

  #localHeader(name: Buffer, flags: number, stats: ZipEntryStats | undefined, zip64: boolean) {
    const extra = zip64 ? 20 : 0;
    const header = Buffer.alloc(30 + name.length + extra);
    header.writeUInt32LE(0x04034b50, 0);
    header.writeUInt16LE(zip64 ? VERSION_ZIP64 : VERSION_DEFLATE, 4);
    header.writeUInt16LE(flags, 6);
    header.writeUInt16LE(METHOD_DEFLATE, 8);
    header.writeUInt16LE(this.#dos.time, 10);
    header.writeUInt16LE(this.#dos.date, 12);
    header.writeUInt32LE(stats?.crc ?? 0, 14);
    header.writeUInt32LE(zip64 ? MAX32 : (stats?.compressedSize ?? 0), 18);
    header.writeUInt32LE(zip64 ? MAX32 : (stats?.size ?? 0), 22);
    header.writeUInt16LE(name.length, 26);
    header.writeUInt16LE(extra, 28);
    name.copy(header, 30);
    if (zip64) {
      // Sizes follow in the data descriptor; zero here, as APPNOTE 4.5.3 asks.
      header.writeUInt16LE(0x0001, 30 + name.length);
      header.writeUInt16LE(16, 32 + name.length);
    }
    return header;
  }

  /** Adds a small entry, compressed here in one go. */
  async addEntry(name: string, content: string | Buffer): Promise<void> {
    this.#checkIdle();
    const raw = typeof content === "string" ? Buffer.from(content, "utf8") : content;
    const bytes = deflateRawSync(raw, { finishFlush: constants.Z_FINISH });
    const stats = { crc: crc32(raw), size: raw.length, compressedSize: bytes.length };
    const nameBytes = Buffer.from(name, "utf8");
    const offset = this.#offset;
    await this.#emit(this.#localHeader(nameBytes, FLAG_UTF8, stats, false));
    await this.#emit(bytes);
    this.#entries.push({ name: nameBytes, flags: FLAG_UTF8, offset, zip64: false, ...stats });
  }

  /**
   * Opens an entry whose deflate stream the caller writes in pieces. `zip64`: write the Zip64
   * local header and descriptor (decide ahead: an entry of 4 GiB or more without it is read
   * right only by readers that use the central directory).
   */
  async openEntry(name: string, options: { zip64: boolean }): Promise<ZipEntryStream> {
    this.#checkIdle();
    this.#open = true;
    const nameBytes = Buffer.from(name, "utf8");
    const flags = FLAG_UTF8 | FLAG_DATA_DESCRIPTOR;
    const offset = this.#offset;
    await this.#emit(this.#localHeader(nameBytes, flags, undefined, options.zip64));
    const dataStart = this.#offset;
    return {
      write: (bytes) => this.#emit(bytes),
      end: async ({ crc, size }) => {
        const compressedSize = this.#offset - dataStart;
        const zip64 = options.zip64;
        const descriptor = Buffer.alloc(zip64 ? 24 : 16);
        descriptor.writeUInt32LE(0x08074b50, 0);
        descriptor.writeUInt32LE(crc >>> 0, 4);
        if (zip64) {
          u64(descriptor, compressedSize, 8);
          u64(descriptor, size, 16);
        } else {
          descriptor.writeUInt32LE(compressedSize % 2 ** 32, 8);
          descriptor.writeUInt32LE(size % 2 ** 32, 12);
        }
        await this.#emit(descriptor);
        const stats = { crc: crc >>> 0, size, compressedSize };
        this.#entries.push({ name: nameBytes, flags, offset, zip64, ...stats });
        this.#open = false;
        return stats;
      },
    };
  }

  /** Writes the central directory and the end records. */
  async finish(): Promise<void> {
    this.#checkIdle();
    this.#finished = true;
    const cdOffset = this.#offset;
    for (const entry of this.#entries) await this.#emit(this.#centralRecord(entry));
    const cdSize = this.#offset - cdOffset;
    const count = this.#entries.length;
    const zip64End =
      cdOffset >= MAX32 || cdSize >= MAX32 || count >= 0xffff || this.#entries.some((e) => e.zip64);
    if (zip64End) {
      const recordOffset = this.#offset;
      const record = Buffer.alloc(56);
      record.writeUInt32LE(0x06064b50, 0);
      u64(record, 44, 4);
      record.writeUInt16LE(VERSION_ZIP64, 12);
      record.writeUInt16LE(VERSION_ZIP64, 14);
      u64(record, count, 24);
      u64(record, count, 32);
      u64(record, cdSize, 40);
      u64(record, cdOffset, 48);
      const locator = Buffer.alloc(20);
      locator.writeUInt32LE(0x07064b50, 0);
      u64(locator, recordOffset, 8);
      locator.writeUInt32LE(1, 16);
      await this.#emit(Buffer.concat([record, locator]));
    }
    // With Zip64 end records, every field that has a Zip64 twin says -1: readers such as JSZip
    // (exceljs) look for the Zip64 record only then, and otherwise take it for leading junk.
    const end = Buffer.alloc(22);
    end.writeUInt32LE(0x06054b50, 0);
    end.writeUInt16LE(zip64End ? 0xffff : count, 8);
    end.writeUInt16LE(zip64End ? 0xffff : count, 10);
    end.writeUInt32LE(zip64End ? MAX32 : cdSize, 12);
    end.writeUInt32LE(zip64End ? MAX32 : cdOffset, 16);
    await this.#emit(end);
  }

  #centralRecord(e: Written): Buffer {
    const big = {
      size: e.zip64 || e.size >= MAX32,
      compressed: e.zip64 || e.compressedSize >= MAX32,
      offset: e.offset >= MAX32,
    };
    const fields = [big.size, big.compressed, big.offset].filter(Boolean).length;
    const extra = fields > 0 ? 4 + 8 * fields : 0;
    const zip64 = fields > 0;
    const rec = Buffer.alloc(46 + e.name.length + extra);
    rec.writeUInt32LE(0x02014b50, 0);
    // Made by: UNIX (3) high byte, spec version low byte.
    rec.writeUInt16LE((3 << 8) | (zip64 ? VERSION_ZIP64 : VERSION_DEFLATE), 4);
    rec.writeUInt16LE(zip64 ? VERSION_ZIP64 : VERSION_DEFLATE, 6);
    rec.writeUInt16LE(e.flags, 8);
    rec.writeUInt16LE(METHOD_DEFLATE, 10);
    rec.writeUInt16LE(this.#dos.time, 12);
    rec.writeUInt16LE(this.#dos.date, 14);
    rec.writeUInt32LE(e.crc, 16);
    rec.writeUInt32LE(big.compressed ? MAX32 : e.compressedSize, 20);
    rec.writeUInt32LE(big.size ? MAX32 : e.size, 24);
    rec.writeUInt16LE(e.name.length, 28);
    rec.writeUInt16LE(extra, 30);
    // comment length, disk, internal attributes: 0; external: a regular file, 0644.
    rec.writeUInt32LE((0o100644 << 16) >>> 0, 38);
    rec.writeUInt32LE(big.offset ? MAX32 : e.offset, 42);
    e.name.copy(rec, 46);
    if (zip64) {
      let at = 46 + e.name.length;
      rec.writeUInt16LE(0x0001, at);
      rec.writeUInt16LE(8 * fields, at + 2);
      at += 4;
      // The order is fixed: uncompressed, compressed, offset (only those set to 0xFFFFFFFF).
      if (big.size) {
        u64(rec, e.size, at);
        at += 8;
      }
      if (big.compressed) {
        u64(rec, e.compressedSize, at);
        at += 8;
      }
      if (big.offset) u64(rec, e.offset, at);
    }
    return rec;
  }
}
