/** Test helper: downloads an operation's output workbook through the API and reads its rows. */
import { PassThrough } from "node:stream";
import ExcelJS from "exceljs";
import type { ApiClient } from "../../src/cli/api-client.ts";

/** Every row of the first sheet (header first), cell values from column A on. */
export async function downloadRows(client: ApiClient, id: string): Promise<unknown[][]> {
  const body = new PassThrough();
  const chunks: Buffer[] = [];
  body.on("data", (c: Buffer) => chunks.push(c));
  await client.download(id, () => body);
  const workbook = new ExcelJS.Workbook();
  await workbook.xlsx.load(Buffer.concat(chunks) as unknown as ArrayBuffer);
  const rows: unknown[][] = [];
  workbook.worksheets[0]!.eachRow((row) => {
    rows.push((row.values as unknown[]).slice(1));
  });
  return rows;
}
