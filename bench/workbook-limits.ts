/**
 * bench/workbook-limits: what a zip bomb costs the header check, and what reading rows costs.
 *
 *   npm run bench:workbook [-- --inspect-module PATH] [-- --bomb-gib 4]
 *
 * 1. Builds a bomb like the one of issue 13 — an xlsx whose sheet (stored before the shared
 *    strings, as Excel writes it) inflates from about 12 MB to `--bomb-gib` GiB (4 by default)
 *    — and times the header check on it (`inspectWorkbook`), reporting the outcome and how many
 *    bytes the check left in the temporary directory while it ran; then (this tree's reader
 *    only) the whole `POST /operations` of the bomb against the local S3 server.
 * 2. Times reading every row of a 100,000-row, 4-column workbook (exceljs-written) to compare
 *    readers.
 *
 * `--inspect-module` points at another `inspect.ts` (e.g. an older checkout's) to measure it
 * the same way: it is given a file stream, which every version accepts. Figures, not
 * assertions; results in BENCHMARKS.md.
 */
import {
  createReadStream,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { constants, crc32, deflateRawSync } from "node:zlib";
import ExcelJS from "exceljs";
import { zipOfCompressed } from "../test/support/workbooks.ts";

const args = process.argv.slice(2);
const arg = (name: string) => {
  const k = args.indexOf(`--${name}`);
  return k === -1 ? undefined : args[k + 1];
};
const inspectPath = path.resolve(
  arg("inspect-module") ?? path.join(import.meta.dirname, "../src/scheduler/workbook/inspect.ts"),
);
const bombGiB = Number(arg("bomb-gib") ?? 4);
const readPath = path.join(path.dirname(inspectPath), "read-rows.ts");

interface InspectModule {
  inspectWorkbook(
    input: NodeJS.ReadableStream,
    options: { format: "xlsx" },
  ): Promise<{ headers: string[] }>;
}
interface ReadModule {
  readRows(input: NodeJS.ReadableStream, options: { format: "xlsx" }): AsyncIterable<unknown[]>;
}

const NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"';

/** A raw-deflate piece that ends on a byte boundary without ending the stream (sync flush). */
const piece = (data: Buffer) =>
  deflateRawSync(data, { level: 9, finishFlush: constants.Z_SYNC_FLUSH });

/** A zip with the given entries (name, deflated bytes, inflated size, crc), in order. */
function zip(entries: Array<{ name: string; data: Buffer; size: number; crc: number }>): Buffer {
  return zipOfCompressed(entries.map(({ data, ...e }) => ({ ...e, compressed: data })));
}

function small(name: string, text: string) {
  const raw = Buffer.from(text);
  return { name, data: deflateRawSync(raw), size: raw.length, crc: crc32(raw) };
}

/** The sheet: a header and a data row, then `gib` GiB of identical rows, built piecewise. */
function bombSheet(gib: number) {
  const head = Buffer.from(
    `<?xml version="1.0" encoding="UTF-8"?><worksheet ${NS}><sheetData><row r="1"><c t="inlineStr"><is><t>id</t></is></c></row><row r="2"><c><v>1</v></c></row>`,
  );
  const unit = Buffer.from('<row><c t="inlineStr"><is><t>bomb</t></is></c></row>'.repeat(20_000));
  const tail = Buffer.from("</sheetData></worksheet>");
  const copies = Math.floor((gib * 1024 ** 3) / unit.length);
  const body = piece(unit);
  let crc = crc32(head);
  for (let k = 0; k < copies; k++) crc = crc32(unit, crc);
  crc = crc32(tail, crc);
  const data = Buffer.concat([
    piece(head),
    ...Array.from({ length: copies }, () => body),
    deflateRawSync(tail),
  ]);
  return {
    name: "xl/worksheets/sheet1.xml",
    data,
    size: head.length + copies * unit.length + tail.length,
    crc,
  };
}

function bombWorkbook(gib: number): Buffer {
  return zip([
    bombSheet(gib),
    small("xl/sharedStrings.xml", `<sst ${NS}></sst>`),
    small(
      "xl/workbook.xml",
      `<workbook ${NS} xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>`,
    ),
    small(
      "xl/_rels/workbook.xml.rels",
      '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>',
    ),
  ]);
}

/** Bytes under `dir`, sampled every 100 ms while `run` goes on: the most seen. */
async function peakDisk<T>(
  dir: string,
  run: () => Promise<T>,
): Promise<{ value: T; peak: number }> {
  let peak = 0;
  const sample = () => {
    let total = 0;
    const walk = (d: string) => {
      for (const name of readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, name.name);
        try {
          if (name.isDirectory()) walk(p);
          else total += statSync(p).size;
        } catch {
          // removed meanwhile
        }
      }
    };
    walk(dir);
    peak = Math.max(peak, total);
  };
  const timer = setInterval(sample, 100);
  try {
    return { value: await run(), peak };
  } finally {
    clearInterval(timer);
    sample();
  }
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

async function main() {
  const work = mkdtempSync(path.join(tmpdir(), "bench-workbook-"));
  // Whatever the reader spools goes under `work/tmp`, where it is measured.
  const spoolDir = path.join(work, "tmp");
  mkdirSync(spoolDir);
  process.env.TMPDIR = spoolDir;
  try {
    const { inspectWorkbook } = (await import(pathToFileURL(inspectPath).href)) as InspectModule;
    const { readRows } = (await import(pathToFileURL(readPath).href)) as ReadModule;
    console.log(`reader: ${path.relative(process.cwd(), path.dirname(inspectPath))}`);

    const bombFile = path.join(work, "bomb.xlsx");
    writeFileSync(bombFile, bombWorkbook(bombGiB));
    console.log(
      `bomb: ${mb(statSync(bombFile).size)} on disk, sheet inflates to ${bombGiB} GiB (sheet before shared strings)`,
    );
    // Random access where the reader has it (what intake does over S3), else a stream.
    const bytes = await import(
      pathToFileURL(path.join(path.dirname(inspectPath), "byte-source.ts")).href
    )
      .then((m: { fileByteSource(file: string): Promise<unknown> }) => m.fileByteSource)
      .catch(() => undefined);
    const started = performance.now();
    const { value: outcome, peak } = await peakDisk(spoolDir, async () =>
      inspectWorkbook(
        (bytes ? await bytes(bombFile) : createReadStream(bombFile)) as NodeJS.ReadableStream,
        { format: "xlsx" },
      ).then(
        (r) => `accepted (headers ${r.headers.join(",")})`,
        (err: Error & { code?: string }) => `refused ${err.code ?? ""}: ${err.message}`,
      ),
    );
    console.log(
      `header check: ${((performance.now() - started) / 1000).toFixed(2)} s, ${outcome}; peak temp disk ${mb(peak)}`,
    );

    if (!args.includes("--inspect-module")) {
      // The whole submission through the API over the local S3 server: upload, then refusal.
      const { multipart, testApp, transformSpec } = await import("../test/support/api.ts");
      const { startLocalAws } = await import("../test/support/local-aws.ts");
      const env = await startLocalAws("bench-workbook");
      const { app } = testApp(env, { maxUploadBytes: 64 * 1024 * 1024 });
      try {
        const { payload, headers } = await multipart([
          { name: "spec", value: JSON.stringify(transformSpec()) },
          { name: "file", filename: "bomb.xlsx", data: readFileSync(bombFile) },
        ]);
        const t = performance.now();
        const res = await app.inject({ method: "POST", url: "/operations", payload, headers });
        console.log(
          `POST /operations with the bomb: ${res.statusCode} in ${((performance.now() - t) / 1000).toFixed(2)} s (upload to S3 included)`,
        );
      } finally {
        await app.close();
        await env.close();
      }
    }

    const rows = 100_000;
    const wb = new ExcelJS.Workbook();
    const ws = wb.addWorksheet("customers");
    ws.addRow(["id", "name", "city", "balance"]);
    for (let k = 0; k < rows; k++) ws.addRow([k, `customer ${k}`, `city ${k % 97}`, k * 1.25]);
    const file = path.join(work, "rows.xlsx");
    await wb.xlsx.writeFile(file);
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    let n = 0;
    const input = bytes ? await bytes(file) : createReadStream(file);
    for await (const _row of readRows(input as NodeJS.ReadableStream, { format: "xlsx" })) n++;
    const cpu = process.cpuUsage(cpu0);
    const wall = (performance.now() - t0) / 1000;
    console.log(
      `read ${n - 1} data rows (${mb(statSync(file).size)} xlsx): ${wall.toFixed(2)} s wall, ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s CPU, ${Math.round((n - 1) / wall).toLocaleString("en-US")} rows/s`,
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
