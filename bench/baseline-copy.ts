/**
 * The benchmark's baseline: one process that reads a workbook and writes it back with the
 * exceljs streaming reader and writer (what a no-op job costs without shardfleet).
 * Usage: node --import tsx bench/baseline-copy.ts IN.xlsx OUT.xlsx → prints JSON {ms, rows, peakRssMb}
 */
import { createReadStream } from "node:fs";
import ExcelJS from "exceljs";

const [input, output] = process.argv.slice(2);
if (!input || !output) {
  process.stderr.write("usage: baseline-copy IN.xlsx OUT.xlsx\n");
  process.exit(64);
}
const started = performance.now();
const writer = new ExcelJS.stream.xlsx.WorkbookWriter({ filename: output, useStyles: true });
const out = writer.addWorksheet("results");
const reader = new ExcelJS.stream.xlsx.WorkbookReader(createReadStream(input), {
  sharedStrings: "cache",
  styles: "cache",
  hyperlinks: "ignore",
  worksheets: "emit",
});
let rows = 0;
for await (const sheet of reader) {
  for await (const row of sheet) {
    out.addRow((row.values as unknown[]).slice(1)).commit();
    rows++;
  }
  break;
}
out.commit();
await writer.commit();
const ms = performance.now() - started;
process.stdout.write(
  `${JSON.stringify({ ms, rows, peakRssMb: process.resourceUsage().maxRSS / 1024 })}\n`,
);
