/**
 * A zip read by random access (yauzl): the end record and central directory first, then only
 * the entries asked for, in any order. Limits are checked before anything is inflated: the
 * entry count from the end record, each part's declared size and compression ratio from the
 * central directory; a part that inflates past its declared size is stopped (yauzl counts).
 */
import { Readable, Transform, type TransformCallback } from "node:stream";
import { createInflateRaw } from "node:zlib";
import yauzl from "yauzl";
import { isAwsServiceError } from "../../shared/aws-errors.ts";
import { BadInputError, ShardfleetError } from "../../shared/errors.ts";
import { isTransientError } from "../../shared/transient.ts";
import type { ByteSource } from "./byte-source.ts";
import {
  checkDeclaredPart,
  checkEntryCount,
  inflatedPastDeclared,
  type WorkbookLimits,
} from "./limits.ts";

export const NOT_XLSX = "file is not a readable xlsx workbook";

export function notXlsx(cause?: unknown): BadInputError {
  return new BadInputError("WORKBOOK_INVALID", NOT_XLSX, { cause });
}

/**
 * Keeps our own errors, S3 faults (they carry `$metadata`) and aborts as they are; anything
 * else the zip or XML layers throw is the file's fault.
 */
export function asWorkbookError(err: unknown, signal?: AbortSignal): unknown {
  if (signal?.aborted) return signal.reason;
  if (err instanceof ShardfleetError) return err;
  if (isAwsServiceError(err) || isTransientError(err)) return err;
  return notXlsx(err);
}

/** Inflated chunk size: fewer, larger chunks for the sheet scan (zlib's default is 16 KiB). */
const INFLATE_CHUNK_BYTES = 256 * 1024;

/**
 * Passes an entry's inflated bytes on and holds them to the size its directory record declares:
 * more is stopped at the first byte over (a zip bomb), less is a damaged file.
 */
class DeclaredSize extends Transform {
  #seen = 0;

  constructor(
    private readonly name: string,
    private readonly declared: number,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.#seen += chunk.length;
    if (this.#seen > this.declared) done(inflatedPastDeclared(this.name, this.declared));
    else done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    if (this.#seen < this.declared) {
      done(
        notXlsx(new Error(`${this.name} inflates to ${this.#seen} bytes, not ${this.declared}`)),
      );
    } else done();
  }
}

/** Central directories up to this size are fetched whole (10,000 entries take about 1 MB). */
const PREFETCH_MAX_BYTES = 16 * 1024 * 1024;

/**
 * yauzl's reader interface over a ByteSource. yauzl reads the central directory one small
 * record at a time; over S3 each read would be a GET, so the directory is fetched once
 * (`prefetch`) and served from memory.
 */
class SourceReader extends yauzl.RandomAccessReader {
  #window: { start: number; bytes: Buffer } | undefined;

  constructor(private readonly source: ByteSource) {
    super();
  }

  async prefetch(start: number, end: number): Promise<void> {
    if (end - start > PREFETCH_MAX_BYTES || start < 0 || end <= start) return;
    const chunks: Buffer[] = [];
    for await (const chunk of this.source.read(start, end)) chunks.push(chunk as Buffer);
    this.#window = { start, bytes: Buffer.concat(chunks) };
  }

  override _readStreamForRange(start: number, end: number): Readable {
    const w = this.#window;
    if (w && start >= w.start && end <= w.start + w.bytes.length) {
      return Readable.from([w.bytes.subarray(start - w.start, end - w.start)]);
    }
    return this.source.read(start, end);
  }
}

export class ZipArchive {
  readonly #zip: yauzl.ZipFile;
  /** Entries by lower-cased name: producers disagree on case (`sharedStrings` vs `SharedStrings`). */
  readonly #entries: Map<string, yauzl.Entry>;
  readonly #limits: WorkbookLimits;

  private constructor(
    zip: yauzl.ZipFile,
    entries: Map<string, yauzl.Entry>,
    limits: WorkbookLimits,
  ) {
    this.#zip = zip;
    this.#entries = entries;
    this.#limits = limits;
  }

  /**
   * Reads the end record and the central directory. Throws PAYLOAD_TOO_LARGE for too many
   * entries, WORKBOOK_INVALID for something that is not a zip (truncated, corrupt tail).
   */
  static async open(
    source: ByteSource,
    limits: WorkbookLimits,
    signal?: AbortSignal,
  ): Promise<ZipArchive> {
    if (source.size === 0) throw notXlsx();
    let zip: yauzl.ZipFile | undefined;
    try {
      const reader = new SourceReader(source);
      zip = await yauzl.fromRandomAccessReaderPromise(reader, source.size, {
        lazyEntries: true,
        autoClose: false,
        validateEntrySizes: true,
      });
      checkEntryCount(zip.entryCount, limits);
      // The directory starts at the cursor and runs to the end record.
      await reader.prefetch(
        (zip as unknown as { readEntryCursor: number }).readEntryCursor,
        source.size,
      );
      const entries = new Map<string, yauzl.Entry>();
      for await (const entry of zip.eachEntry()) {
        signal?.throwIfAborted();
        entries.set(entry.fileName.replace(/^\//, "").toLowerCase(), entry);
      }
      return new ZipArchive(zip, entries, limits);
    } catch (err) {
      zip?.close();
      throw asWorkbookError(err, signal);
    }
  }

  has(name: string): boolean {
    return this.#entries.has(name.toLowerCase());
  }

  /**
   * The inflated bytes of `name`, after its declared size and ratio passed the limit for
   * `kind`; undefined when there is no such entry.
   */
  async open(name: string, kind: "sheet" | "part"): Promise<Readable | undefined> {
    const entry = this.#entries.get(name.toLowerCase());
    if (!entry) return undefined;
    checkDeclaredPart(
      {
        name: entry.fileName,
        compressedSize: entry.compressedSize,
        uncompressedSize: entry.uncompressedSize,
      },
      kind,
      this.#limits,
    );
    let raw: Readable;
    try {
      // Raw bytes, inflated here: yauzl's inflater emits 16 KiB chunks through two more stream
      // stages, which cost more CPU than the inflate itself on a 200 MB sheet.
      raw = await this.#zip.openReadStreamPromise(entry, { decodeFileData: false });
    } catch (err) {
      throw asWorkbookError(err);
    }
    if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8) {
      raw.destroy();
      throw notXlsx(new Error(`${entry.fileName}: compression method ${entry.compressionMethod}`));
    }
    if (entry.isEncrypted()) {
      raw.destroy();
      throw notXlsx(new Error(`${entry.fileName} is encrypted`));
    }
    const inflate =
      entry.compressionMethod === 8
        ? createInflateRaw({ chunkSize: INFLATE_CHUNK_BYTES })
        : undefined;
    // Errors come out as our refusals (past the declared size: named after the entry), whoever
    // reads the stream.
    const out = new DeclaredSize(entry.fileName, entry.uncompressedSize);
    const fail = (err: Error) => out.destroy(asWorkbookError(err) as Error);
    raw.on("error", fail);
    inflate?.on("error", fail);
    out.on("close", () => {
      raw.destroy();
      inflate?.destroy();
    });
    if (inflate) raw.pipe(inflate).pipe(out);
    else raw.pipe(out);
    return out;
  }

  close(): void {
    this.#zip.close();
  }
}
