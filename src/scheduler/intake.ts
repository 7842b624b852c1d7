/**
 * Upload handling for `POST /operations`: reads the multipart parts in whatever order they
 * arrive, checks the spec as soon as it is seen, recognises the workbook's format, and streams
 * the file to S3 while it arrives (never holding it whole). Framework-free: the route hands in
 * the parts iterator, so this is testable without HTTP and the service imports no fastify.
 *
 * It persists only the uploaded input object. The caller (OperationService.create) owns the
 * rest of the submission and deletes the operation's prefixes on any rejection.
 */
import path from "node:path";
import { Readable } from "node:stream";
import { BadInputError } from "../shared/errors.ts";
import { keys } from "../shared/keys.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import { type OperationSpec, parseOperationSpec } from "../shared/schemas/operation.ts";
import { type WorkbookFormat, XLSX_CONTENT_TYPE } from "./workbook/read-rows.ts";

/** A text field of the multipart body (the shape @fastify/multipart yields). */
export interface FieldPart {
  type: "field";
  fieldname: string;
  /** Text, or already-parsed JSON when the part declared `application/json`. */
  value: unknown;
  valueTruncated: boolean;
}

/** A file part of the multipart body; `file` must be read to the end before the next part. */
export interface FilePart {
  type: "file";
  fieldname: string;
  filename: string;
  mimetype: string;
  /** busboy sets `truncated` when the file went over the parser's size limit. */
  file: Readable & { truncated?: boolean };
}

export type SubmissionPart = FieldPart | FilePart;

/** Multipart field names of a submission. */
export const SPEC_FIELD = "spec";
export const FILE_FIELD = "file";

/** The spec field's size cap; a spec is a few hundred bytes. */
export const MAX_SPEC_BYTES = 1024 * 1024;

const CSV_MIMES = new Set(["text/csv", "application/csv", "text/x-csv", "application/x-csv"]);
/** xlsx is a zip archive; every zip starts with a local file header. */
const ZIP_MAGIC = Buffer.from([0x50, 0x4b, 0x03, 0x04]);
/** Bytes looked at to tell a workbook from something else. */
const SNIFF_BYTES = 512;

export interface UploadedInput {
  key: string;
  filename: string;
  format: WorkbookFormat;
  bytes: number;
}

export interface Submission {
  spec: OperationSpec;
  input: UploadedInput;
}

export interface IntakeOptions {
  operationId: string;
  /** Upload cap in bytes; a bigger file is refused with 413 (PAYLOAD_TOO_LARGE). */
  maxUploadBytes: number;
  /** Further checks of a parsed spec, run as soon as it arrives (throw BadInputError to refuse). */
  checkSpec?: (spec: OperationSpec) => Promise<void>;
  signal?: AbortSignal;
}

/**
 * Reads a submission's parts: `spec` (JSON text) and `file` (xlsx or csv), in either order.
 * The spec is validated the moment it arrives, so a bad spec sent first is refused before any
 * byte of the file is stored. Throws BadInputError for every problem with the request.
 */
export async function receiveSubmission(
  deps: { store: ObjectStore },
  parts: AsyncIterable<SubmissionPart>,
  options: IntakeOptions,
): Promise<Submission> {
  let spec: OperationSpec | undefined;
  let input: UploadedInput | undefined;
  for await (const part of parts) {
    if (part.fieldname === SPEC_FIELD) {
      if (spec) throw badRequest(`field "${SPEC_FIELD}" was sent twice`);
      spec = parseSpecText(
        part.type === "field" ? fieldText(part) : await readSmallFile(part, MAX_SPEC_BYTES),
      );
      await options.checkSpec?.(spec);
    } else if (part.fieldname === FILE_FIELD) {
      if (part.type !== "file") {
        throw badRequest(
          `"${FILE_FIELD}" must be a file upload (a part with a filename), not text`,
        );
      }
      if (input) throw badRequest(`field "${FILE_FIELD}" was sent twice; send one workbook`);
      input = await uploadInput(deps, part, options);
    } else {
      if (part.type === "file") part.file.resume();
      throw badRequest(
        `unexpected ${part.type} "${part.fieldname}": send a "${SPEC_FIELD}" field (JSON) and a "${FILE_FIELD}" file (xlsx or csv)`,
      );
    }
  }
  if (!input) throw badRequest(`missing "${FILE_FIELD}": attach the workbook (xlsx or csv)`);
  if (!spec) throw badRequest(`missing "${SPEC_FIELD}": send the operation spec as JSON`);
  return { spec, input };
}

function badRequest(message: string): BadInputError {
  return new BadInputError("BAD_REQUEST", message);
}

function fieldText(part: FieldPart): unknown {
  if (part.valueTruncated) {
    throw new BadInputError(
      "PAYLOAD_TOO_LARGE",
      `field "${SPEC_FIELD}" is over ${MAX_SPEC_BYTES} bytes`,
    );
  }
  return part.value;
}

/** A spec sent as a file part (`curl -F spec=@spec.json`): small, so read it whole. */
async function readSmallFile(part: FilePart, max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of part.file as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) {
      throw new BadInputError("PAYLOAD_TOO_LARGE", `field "${SPEC_FIELD}" is over ${max} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf-8");
}

/** Parses the spec field (JSON text, or an object the multipart parser already decoded). */
export function parseSpecText(value: unknown): OperationSpec {
  let raw = value;
  if (typeof value === "string") {
    if (value.trim() === "")
      throw new BadInputError("SPEC_INVALID", `field "${SPEC_FIELD}" is empty`);
    try {
      raw = JSON.parse(value);
    } catch (err) {
      throw new BadInputError(
        "SPEC_INVALID",
        `field "${SPEC_FIELD}" is not valid JSON: ${(err as Error).message}`,
      );
    }
  }
  return parseOperationSpec(raw);
}

/** The extension, lower-cased and without the dot ("" when there is none). */
function extensionOf(filename: string): string {
  return path.extname(filename).slice(1).toLowerCase();
}

/**
 * Decides the format from the declared name and type, then checks the first bytes agree:
 * an xlsx must be a zip; CSV must not be binary. Anything else is 415.
 */
export function detectFormat(filename: string, mimetype: string, head: Buffer): WorkbookFormat {
  const ext = extensionOf(filename);
  const mime = mimetype.split(";")[0]!.trim().toLowerCase();
  const isZip = head.subarray(0, ZIP_MAGIC.length).equals(ZIP_MAGIC);
  const label = `file ${JSON.stringify(filename)}`;

  let declared: WorkbookFormat | undefined;
  if (ext === "xlsx") declared = "xlsx";
  else if (ext === "csv") declared = "csv";
  else if (ext === "" || ext === "bin") {
    if (mime === XLSX_CONTENT_TYPE) declared = "xlsx";
    else if (CSV_MIMES.has(mime)) declared = "csv";
    else if (isZip) declared = "xlsx";
  } else if (mime === XLSX_CONTENT_TYPE && isZip) declared = "xlsx";

  if (!declared) {
    const hint = ext === "xls" ? " (legacy .xls is not supported: save it as .xlsx)" : "";
    throw new BadInputError(
      "UNSUPPORTED_MEDIA_TYPE",
      `${label} (${mime || "no content type"}) is not a workbook${hint}: send an .xlsx or .csv file`,
    );
  }
  // An empty file is a workbook with nothing in it (422 from the reader), not a media-type error.
  if (head.length === 0) return declared;
  if (declared === "xlsx" && !isZip) {
    throw new BadInputError(
      "UNSUPPORTED_MEDIA_TYPE",
      `${label} is not an xlsx workbook: its content is not a zip archive`,
    );
  }
  if (declared === "csv" && (isZip || head.includes(0))) {
    throw new BadInputError(
      "UNSUPPORTED_MEDIA_TYPE",
      `${label} is not CSV text: its content is binary${isZip ? " (a zip archive: name it .xlsx if it is one)" : ""}`,
    );
  }
  return declared;
}

/** A file name fit for the manifest and logs: no directories, bounded length. */
function cleanFilename(filename: string, format: WorkbookFormat): string {
  const base = path.basename(filename.replaceAll("\\", "/")).trim().slice(0, 255);
  return base || `workbook.${format}`;
}

/** Reads until `min` bytes (or the end) are buffered, without losing any of them. */
async function readHead(
  iterator: AsyncIterator<Buffer>,
  min: number,
): Promise<{ head: Buffer; ended: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  while (size < min) {
    const next = await iterator.next();
    if (next.done) return { head: Buffer.concat(chunks), ended: true };
    chunks.push(next.value);
    size += next.value.length;
  }
  return { head: Buffer.concat(chunks), ended: false };
}

/**
 * Sniffs the first bytes, then streams the whole file to `keys.input(op, format)` with a
 * multipart upload. Counts bytes itself as well as honouring busboy's `truncated`, so the cap
 * holds even when the parser was configured with a bigger limit.
 */
async function uploadInput(
  deps: { store: ObjectStore },
  part: FilePart,
  options: IntakeOptions,
): Promise<UploadedInput> {
  const iterator = (part.file as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  // Ends our read of the part early: destroying the file stream lets the parser (and with it
  // the request) finish, so the refusal is answered at once instead of after the whole body.
  const release = async () => {
    if (!part.file.readableEnded) await iterator.return?.();
  };
  const { head, ended } = await readHead(iterator, SNIFF_BYTES).catch((err: unknown) => {
    throw badRequest(
      `the upload of ${JSON.stringify(part.filename)} was cut short: ${(err as Error).message}`,
    );
  });
  let format: WorkbookFormat;
  try {
    format = detectFormat(part.filename, part.mimetype, head);
  } catch (err) {
    await release();
    throw err;
  }
  const tooLarge = () =>
    new BadInputError(
      "PAYLOAD_TOO_LARGE",
      `file ${JSON.stringify(part.filename)} is over the upload limit of ${options.maxUploadBytes} bytes`,
    );
  let bytes = 0;
  // lib-storage may wrap or replace an error raised by its body; keep ours to rethrow it as is.
  let refusal: BadInputError | undefined;
  // A broken multipart body or a client that went away: the request's fault, not ours.
  const readMore = async () => {
    try {
      return await iterator.next();
    } catch (err) {
      refusal = badRequest(
        `the upload of ${JSON.stringify(part.filename)} was cut short: ${(err as Error).message}`,
      );
      throw refusal;
    }
  };
  async function* body(): AsyncGenerator<Buffer> {
    const count = (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > options.maxUploadBytes) {
        refusal = tooLarge();
        throw refusal;
      }
    };
    if (head.length > 0) {
      count(head);
      yield head;
    }
    if (!ended) {
      for (let next = await readMore(); !next.done; next = await readMore()) {
        count(next.value);
        yield next.value;
      }
    }
    // busboy stops the stream at its limit and marks it truncated rather than failing it.
    if (part.file.truncated) {
      refusal = tooLarge();
      throw refusal;
    }
  }
  const key = keys.input(options.operationId, format);
  try {
    await deps.store.upload(key, Readable.from(body()), {
      contentType: format === "xlsx" ? XLSX_CONTENT_TYPE : "text/csv",
      signal: options.signal,
    });
  } catch (err) {
    await release();
    throw refusal ?? err;
  }
  return { key, filename: cleanFilename(part.filename, format), format, bytes };
}
