/**
 * Random access to a workbook's compressed bytes, so a zip can be read from its central
 * directory: an S3 object through ranged GETs (intake and the splitter), or a local file.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { PassThrough, Readable } from "node:stream";
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
