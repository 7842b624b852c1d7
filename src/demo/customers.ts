/**
 * Generates the demo's customers workbook with the exceljs streaming writer: ids, names,
 * signup dates and amounts, deterministic for a given row count.
 */
import ExcelJS from "exceljs";

const FIRST = [
  "Ada",
  "Grace",
  "Alan",
  "Edsger",
  "Barbara",
  "Donald",
  "Frances",
  "Ken",
  "Radia",
  "Tim",
];
const LAST = [
  "Lovelace",
  "Hopper",
  "Turing",
  "Dijkstra",
  "Liskov",
  "Knuth",
  "Allen",
  "Thompson",
  "Perlman",
  "Lee",
];

export const CUSTOMER_HEADERS = ["customer_id", "name", "signup_date", "balance"] as const;

export interface CustomerRow {
  customer_id: string;
  name: string;
  signup_date: Date;
  balance: number;
}

/** Row `i` of the demo workbook (0-based). */
export function customerRow(i: number): CustomerRow {
  return {
    customer_id: `C${String(100000 + i)}`,
    name: `${FIRST[i % FIRST.length]} ${LAST[Math.floor(i / FIRST.length) % LAST.length]}`,
    signup_date: new Date(Date.UTC(2015 + (i % 10), i % 12, 1 + (i % 28))),
    balance: Math.round(((i * 7919) % 1_000_000) + 0.25 * (i % 4)) / 100,
  };
}

/** Writes `rows` customers to `file` as xlsx, streaming (constant memory). */
export async function writeCustomersWorkbook(file: string, rows: number): Promise<void> {
  const workbook = new ExcelJS.stream.xlsx.WorkbookWriter({ filename: file, useStyles: true });
  const sheet = workbook.addWorksheet("customers");
  sheet.columns = [
    { header: "customer_id", key: "customer_id", width: 12 },
    { header: "name", key: "name", width: 20 },
    { header: "signup_date", key: "signup_date", width: 12, style: { numFmt: "yyyy-mm-dd" } },
    { header: "balance", key: "balance", width: 12, style: { numFmt: "#,##0.00" } },
  ];
  for (let i = 0; i < rows; i++) sheet.addRow(customerRow(i)).commit();
  sheet.commit();
  await workbook.commit();
}
