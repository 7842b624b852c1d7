/**
 * `POST /workbooks/preview` (multipart: `file`, optional `sheet` before it): the sheets, header
 * row and first rows of a workbook, read by the intake's reader under the intake's limits, for
 * the console's upload page. The file is spooled to a temporary file (never held in memory,
 * capped like a submission) and deleted once read; nothing is stored or queued.
 */
import { createWriteStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { MultipartFile } from "@fastify/multipart";
import type { FastifyPluginAsync } from "fastify";
import { workbookPreviewSchema } from "../../shared/contracts/console.ts";
import { BadInputError } from "../../shared/errors.ts";
import { detectFormat } from "../intake.ts";
import { fileByteSource } from "../workbook/byte-source.ts";
import type { WorkbookLimits } from "../workbook/limits.ts";
import { previewWorkbook } from "../workbook/preview.ts";
import { errorBodySchema, routeSchema } from "./schemas.ts";

export interface PreviewRoutesOptions {
  /** Upload cap in bytes (as for a submission). */
  maxUploadBytes: number;
  /** The intake's workbook limits. @default DEFAULT_WORKBOOK_LIMITS */
  workbookLimits?: WorkbookLimits;
}

const MAX_SHEET_NAME = 255;
/** What the format check looks at (as the intake: a zip's magic, a NUL byte in CSV text). */
const SNIFF_BYTES = 512;

export const previewRoutes: FastifyPluginAsync<PreviewRoutesOptions> = async (app, opts) => {
  app.post(
    "/workbooks/preview",
    {
      schema: {
        response: {
          200: routeSchema(workbookPreviewSchema),
          400: errorBodySchema,
          413: errorBodySchema,
          415: errorBodySchema,
          422: errorBodySchema,
        },
      },
    },
    async (request) => {
      const dir = await mkdtemp(path.join(tmpdir(), "shardfleet-preview-"));
      const cleanup = () => rm(dir, { recursive: true, force: true });
      try {
        let sheet: string | undefined;
        const parts = request.parts({
          limits: { fileSize: opts.maxUploadBytes, fieldSize: MAX_SHEET_NAME, parts: 3 },
        });
        for await (const part of parts) {
          if (part.type === "field" && part.fieldname === "sheet") {
            sheet = String(part.value) || undefined;
            continue;
          }
          if (part.type !== "file" || part.fieldname !== "file") {
            if (part.type === "file") part.file.resume();
            throw new BadInputError(
              "BAD_REQUEST",
              `unexpected ${part.type} "${part.fieldname}": send a "file" (xlsx or csv) and optionally a "sheet" field before it`,
            );
          }
          const file = path.join(dir, "workbook");
          const head = await spool(part, file, opts.maxUploadBytes);
          const format = detectFormat(part.filename, part.mimetype, head);
          return await previewWorkbook(await fileByteSource(file, cleanup), {
            format,
            sheet,
            ...(opts.workbookLimits ? { limits: opts.workbookLimits } : {}),
          });
        }
        throw new BadInputError("BAD_REQUEST", 'missing "file": attach the workbook (xlsx or csv)');
      } finally {
        await cleanup();
      }
    },
  );
};

/** Writes the file part to `file` (at most `max` bytes: else 413); returns its first bytes. */
async function spool(part: MultipartFile, file: string, max: number): Promise<Buffer> {
  let head = Buffer.alloc(0);
  let bytes = 0;
  const count = new Transform({
    transform(chunk: Buffer, _enc, done) {
      bytes += chunk.length;
      if (head.length < SNIFF_BYTES) {
        head = Buffer.concat([head, chunk.subarray(0, SNIFF_BYTES - head.length)]);
      }
      if (bytes > max) done(tooLarge(max));
      else done(null, chunk);
    },
  });
  await pipeline(part.file, count, createWriteStream(file));
  if (part.file.truncated) throw tooLarge(max);
  return head;
}

function tooLarge(max: number): BadInputError {
  return new BadInputError(
    "PAYLOAD_TOO_LARGE",
    `file is over the upload limit of ${Math.round(max / (1024 * 1024))} MB (SHARDFLEET_MAX_UPLOAD_MB)`,
  );
}
