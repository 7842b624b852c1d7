/**
 * Independent readers of an xlsx, for tests of the workbooks shardfleet writes: yauzl with every
 * entry's CRC-32 and size checked against the bytes, exceljs, Python's openpyxl (Debian's
 * `python3-openpyxl`) and LibreOffice headless (`libreoffice-calc-nogui`), the last two when
 * this machine has them (`.ci/run` installs both).
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { crc32 } from "node:zlib";
import { parseString } from "@fast-csv/parse";
import ExcelJS from "exceljs";
import yauzl from "yauzl";

const run = promisify(execFile);

export interface CheckedEntry {
  name: string;
  size: number;
  compressedSize: number;
  /** Whether the central directory gave it Zip64 fields (yauzl reads them). */
  bytes: Buffer;
}

/**
 * Every entry of the zip, inflated by yauzl, with its CRC-32 and uncompressed size checked
 * against the central directory (yauzl checks sizes only); throws on a mismatch.
 */
export async function readZipChecked(zip: Buffer): Promise<Map<string, CheckedEntry>> {
  const file = await promisify<Buffer, yauzl.Options, yauzl.ZipFile>(yauzl.fromBuffer)(zip, {
    lazyEntries: true,
    validateEntrySizes: true,
  });
  const out = new Map<string, CheckedEntry>();
  await new Promise<void>((resolve, reject) => {
    file.on("error", reject);
    file.on("end", () => resolve());
    file.on("entry", (entry: yauzl.Entry) => {
      file.openReadStream(entry, (err, stream) => {
        if (err) return reject(err);
        const parts: Buffer[] = [];
        stream.on("data", (b: Buffer) => parts.push(b));
        stream.on("error", reject);
        stream.on("end", () => {
          const bytes = Buffer.concat(parts);
          const crc = crc32(bytes);
          if (crc !== entry.crc32) {
            return reject(
              new Error(`${entry.fileName}: CRC-32 ${crc} of the bytes, ${entry.crc32} recorded`),
            );
          }
          if (bytes.length !== entry.uncompressedSize) {
            return reject(
              new Error(
                `${entry.fileName}: ${bytes.length} bytes, size recorded ${entry.uncompressedSize}`,
              ),
            );
          }
          out.set(entry.fileName, {
            name: entry.fileName,
            size: entry.uncompressedSize,
            compressedSize: entry.compressedSize,
            bytes,
          });
          file.readEntry();
        });
      });
    });
    file.readEntry();
  });
  return out;
}

/** A cell as every reader below reports it, for comparison. */
export type PlainCell = string | number | boolean | null | { date: string };

function plain(value: unknown): PlainCell {
  if (value === null || value === undefined) return null;
  if (value instanceof Date) return { date: value.toISOString().replace(/\.000Z$/, "") };
  if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") {
    return value;
  }
  throw new Error(`unexpected cell value ${JSON.stringify(value)}`);
}

/** The named sheet's rows through exceljs (the whole workbook in memory), trailing nulls cut. */
export async function readWithExceljs(zip: Buffer, sheetName: string): Promise<PlainCell[][]> {
  const wb = new ExcelJS.Workbook();
  await wb.xlsx.load(zip as unknown as ArrayBuffer);
  const sheet = wb.getWorksheet(sheetName);
  if (!sheet) throw new Error(`no sheet ${sheetName}`);
  const rows: PlainCell[][] = [];
  sheet.eachRow({ includeEmpty: true }, (row, n) => {
    const cells: PlainCell[] = [];
    for (let c = 1; c <= sheet.columnCount; c++) cells.push(plain(row.getCell(c).value));
    rows[n - 1] = trimNulls(cells);
  });
  return Array.from(rows, (r) => r ?? []);
}

function trimNulls(cells: PlainCell[]): PlainCell[] {
  let end = cells.length;
  while (end > 0 && cells[end - 1] === null) end--;
  return cells.slice(0, end);
}

/** A Python 3 that imports openpyxl, or undefined. */
export async function findOpenpyxl(): Promise<string | undefined> {
  for (const python of ["python3", "/usr/bin/python3"]) {
    try {
      await run(python, ["-c", "import openpyxl"]);
      return python;
    } catch {}
  }
  return undefined;
}

const OPENPYXL_SCRIPT = `
import datetime, json, sys, openpyxl
wb = openpyxl.load_workbook(sys.argv[1])
ws = wb[sys.argv[2]]
def cell(v):
    if isinstance(v, datetime.datetime):
        return {"date": v.isoformat()}
    if isinstance(v, datetime.date):
        return {"date": datetime.datetime(v.year, v.month, v.day).isoformat()}
    return v
rows = []
for row in ws.iter_rows(values_only=True):
    cells = [cell(v) for v in row]
    while cells and cells[-1] is None:
        cells.pop()
    rows.append(cells)
print(json.dumps({"rows": rows, "frozen": ws.freeze_panes, "bold": bool(ws["A1"].font.b)}))
`;

/** The sheet's rows through openpyxl, with its frozen pane and whether A1 is bold. */
export async function readWithOpenpyxl(
  python: string,
  zip: Buffer,
  sheetName: string,
): Promise<{ rows: PlainCell[][]; frozen: string | null; bold: boolean }> {
  const dir = await mkdtemp(path.join(tmpdir(), "sf-openpyxl-"));
  try {
    const file = path.join(dir, "book.xlsx");
    await writeFile(file, zip);
    const { stdout } = await run(python, ["-c", OPENPYXL_SCRIPT, file, sheetName], {
      maxBuffer: 256 * 1024 * 1024,
    });
    return JSON.parse(stdout);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** LibreOffice's headless binary, or undefined. */
export function findLibreOffice(): string | undefined {
  for (const bin of [
    "/usr/bin/soffice",
    "/usr/bin/libreoffice",
    "/usr/lib/libreoffice/program/soffice",
  ]) {
    if (existsSync(bin)) return bin;
  }
  return undefined;
}

/**
 * The first sheet as LibreOffice reads it: converted to CSV (UTF-8, every cell as shown, so
 * dates in their number format), then parsed. Each call uses its own profile, so runs do not share state.
 */
export async function readWithLibreOffice(soffice: string, zip: Buffer): Promise<string[][]> {
  const dir = await mkdtemp(path.join(tmpdir(), "sf-soffice-"));
  try {
    const file = path.join(dir, "book.xlsx");
    await writeFile(file, zip);
    await run(
      soffice,
      [
        `-env:UserInstallation=file://${dir}/profile`,
        "--headless",
        "--convert-to",
        "csv:Text - txt - csv (StarCalc):44,34,76,1",
        "--outdir",
        dir,
        file,
      ],
      { timeout: 180_000 },
    );
    const csv = await readFile(path.join(dir, "book.csv"), "utf8");
    const rows: string[][] = [];
    await new Promise<void>((resolve, reject) => {
      parseString(csv)
        .on("data", (row: string[]) => rows.push(row))
        .on("error", reject)
        .on("end", () => resolve());
    });
    return rows;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
