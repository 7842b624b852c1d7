/**
 * Streams the rows of a CSV file (RFC 4180: comma-separated, `"` quoting with `""` escapes,
 * quoted fields may hold commas and line breaks, LF or CRLF line ends) with @fast-csv/parse,
 * which exceljs already depends on. A UTF-8 byte-order mark is dropped.
 *
 * Every field is yielded as the string it was (an empty one as null, like an empty xlsx cell);
 * read-rows.ts types them like xlsx cells (csv-values.ts) unless the spec asks for text.
 */
import { type Readable, Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { parse } from "@fast-csv/parse";
import { BadInputError } from "../../shared/errors.ts";

const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/** Drops a leading UTF-8 BOM, however the first bytes are split across chunks. */
class StripBom extends Transform {
  #head: Buffer | undefined = Buffer.alloc(0);

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.#head === undefined) {
      cb(null, chunk);
      return;
    }
    const head = Buffer.concat([this.#head, chunk]);
    if (head.length < BOM.length && BOM.subarray(0, head.length).equals(head)) {
      this.#head = head;
      cb();
      return;
    }
    this.#head = undefined;
    cb(null, head.subarray(0, BOM.length).equals(BOM) ? head.subarray(BOM.length) : head);
  }

  override _flush(cb: TransformCallback): void {
    cb(null, this.#head?.length ? this.#head : undefined);
  }
}

export interface CsvRowsOptions {
  signal?: AbortSignal | undefined;
}

/**
 * Yields every record as its fields (strings; empty ones null), blank lines included as
 * all-null rows. Throws BadInputError WORKBOOK_INVALID for malformed CSV (an unclosed quote).
 * Owns `input`: it is destroyed when the generator ends, fails or is closed early.
 */
export async function* readCsvRows(
  input: Readable,
  options: CsvRowsOptions = {},
): AsyncGenerator<Array<string | null>> {
  const parser = parse<string[], string[]>({ headers: false, ignoreEmpty: false });
  // pipeline forwards errors and destroys every stage on failure or early exit.
  const piping = pipeline(input, new StripBom(), parser, { signal: options.signal });
  let pipeError: unknown;
  piping.catch((err: unknown) => {
    pipeError = err;
  });
  try {
    for await (const record of parser as AsyncIterable<string[]>) {
      yield record.map((field) => (field === "" ? null : field));
    }
    await piping;
  } catch (err) {
    const cause = pipeError ?? err;
    if (options.signal?.aborted) throw options.signal.reason;
    if (cause instanceof Error && /^Parse Error/.test(cause.message)) {
      throw new BadInputError("WORKBOOK_INVALID", `file is not readable csv: ${cause.message}`, {
        cause,
      });
    }
    throw cause;
  } finally {
    parser.destroy();
    input.destroy();
  }
}
