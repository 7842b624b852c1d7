/**
 * Random access to a workbook's compressed bytes, so a zip can be read from its central
 * directory: an S3 object through ranged GETs (intake and the splitter), a local file, or a
 * stream spooled to a temporary file first (its compressed bytes only, never inflated ones).
 */
import { createReadStream, createWriteStream } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { PassThrough, Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { NotFoundError } from "../../shared/errors.ts";
import type { ObjectStore } from "../../shared/object-store.ts";

export interface ByteSource {
  /** Total size in bytes. */
  readonly size: number;
  /** Bytes [start, end) as a stream; errors (a failed GET) arrive on the stream. */
  read(start: number, end: number): Readable;
  /** Releases what the source holds (a temporary file); safe to call twice. */
  close(): Promise<void>;
}

/** An S3 object read with one ranged GET per `read`. NotFoundError when it does not exist. */
export async function objectByteSource(
  store: ObjectStore,
  key: string,
  signal?: AbortSignal,
): Promise<ByteSource> {
  const size = await store.size(key, signal);
  if (size === undefined) {
    throw new NotFoundError(`input workbook ${key} not found`, { details: { key } });
  }
  return {
    size,
    read(start, end) {
      const out = new PassThrough();
      if (end <= start) {
        out.end();
        return out;
      }
      store.getRange(key, start, end, signal).then(
        (body) => {
          if (!body) {
            // Not the caller's 404: the object was there a moment ago (a 500, retried).
            out.destroy(new Error(`input workbook ${key} vanished while being read`));
            return;
          }
          // The reader gave up before the GET answered (yauzl closes after the header rows).
          if (out.destroyed) {
            body.destroy();
            return;
          }
          body.on("error", (err) => out.destroy(err));
          out.on("close", () => body.destroy());
          body.pipe(out);
        },
        (err: unknown) => out.destroy(err as Error),
      );
      return out;
    },
    async close() {},
  };
}

/** A local file. */
export async function fileByteSource(
  file: string,
  onClose: () => Promise<void> = async () => {},
): Promise<ByteSource> {
  const { size } = await stat(file);
  let closed: Promise<void> | undefined;
  return {
    size,
    read(start, end) {
      if (end <= start) return Readable.from([]);
      return createReadStream(file, { start, end: end - 1 });
    },
    close() {
      closed ??= onClose();
      return closed;
    },
  };
}

/** Prefix of the directories `spooledByteSource` makes under the system's temporary directory. */
export function spoolPrefix(): string {
  return `tmp-${process.pid}-workbook-`;
}

/**
 * Copies a stream of compressed bytes to a temporary file (removed by `close`, or at once if
 * the copy fails) and reads that. Only for callers that hold a stream; the service reads S3.
 */
export async function spooledByteSource(
  input: Readable,
  signal?: AbortSignal,
): Promise<ByteSource> {
  // The input may fail while the directory is being made, before pipeline listens to it.
  let early: unknown;
  const onEarlyError = (err: unknown) => {
    early ??= err;
  };
  input.on("error", onEarlyError);
  const dir = await mkdtemp(path.join(tmpdir(), spoolPrefix())).finally(() =>
    input.off("error", onEarlyError),
  );
  const remove = () => rm(dir, { recursive: true, force: true });
  const file = path.join(dir, "workbook.zip");
  try {
    if (early !== undefined) throw early;
    await pipeline(input, createWriteStream(file), { signal });
    return await fileByteSource(file, remove);
  } catch (err) {
    await remove();
    throw err;
  }
}
