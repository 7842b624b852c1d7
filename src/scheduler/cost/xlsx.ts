/** The cost report as a workbook: the same lines as the CSV, on one sheet. */
import ExcelJS from "exceljs";
import type { CostReport } from "../../shared/schemas/cost.ts";
import { costLines } from "./format.ts";

export async function costXlsx(r: CostReport): Promise<Buffer> {
  const wb = new ExcelJS.Workbook();
  const ws = wb.addWorksheet("Cost");
  ws.columns = [
    { header: "kind", key: "kind", width: 18 },
    { header: "name", key: "name", width: 24 },
    { header: "value", key: "value", width: 14 },
    { header: "unit", key: "unit", width: 10 },
    { header: "detail", key: "detail", width: 80 },
  ];
  for (const l of costLines(r)) ws.addRow(l);
  ws.getRow(1).font = { bold: true };
  return Buffer.from(await wb.xlsx.writeBuffer());
}
