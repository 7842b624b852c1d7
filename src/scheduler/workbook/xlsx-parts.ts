/**
 * The parts of an xlsx workbook that give a sheet's cells their meaning, each read with saxes
 * straight from its zip entry: the workbook (sheet names, order, visibility, 1904 dates), its
 * relationships (which part is which sheet), the shared strings and the cell styles' number
 * formats. Every function streams its part; only the result is kept.
 */
import type { Readable } from "node:stream";
import { localName, saxEvents } from "../../shared/workbook/sax.ts";

export { readSharedStrings } from "../../shared/workbook/shared-strings.ts";

export interface SheetEntry {
  name: string;
  state: string | undefined;
  /** The relationship id that names the sheet's part. */
  rId: string | undefined;
}

export interface WorkbookModel {
  sheets: SheetEntry[];
  date1904: boolean;
}

export async function readWorkbookPart(input: Readable): Promise<WorkbookModel> {
  const sheets: SheetEntry[] = [];
  let date1904 = false;
  for await (const event of saxEvents(input)) {
    if (event.eventType !== "opentag") continue;
    const name = localName(event.value.name);
    const attrs = event.value.attributes;
    if (name === "workbookPr") {
      date1904 = attrs.date1904 === "1" || attrs.date1904 === "true";
    } else if (name === "sheet" && attrs.name !== undefined) {
      // The id attribute is namespaced (`r:id`), with whatever prefix the producer chose.
      const rIdKey = Object.keys(attrs).find((k) => k.includes(":") && localName(k) === "id");
      sheets.push({
        name: attrs.name,
        state: attrs.state,
        rId: rIdKey ? attrs[rIdKey] : undefined,
      });
    }
  }
  return { sheets, date1904 };
}

/** Relationship id → part name inside the zip (`xl/worksheets/sheet1.xml`). */
export async function readRelationships(
  input: Readable,
  base = "xl/",
): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const event of saxEvents(input)) {
    if (event.eventType !== "opentag" || localName(event.value.name) !== "Relationship") continue;
    const { Id, Target, TargetMode } = event.value.attributes;
    if (Id && Target && TargetMode !== "External") out.set(Id, resolvePart(base, Target));
  }
  return out;
}

/** A relationship target as a zip entry name: absolute (`/xl/…`) or relative to `base`. */
export function resolvePart(base: string, target: string): string {
  const parts = (target.startsWith("/") ? target.slice(1) : base + target).split("/");
  const out: string[] = [];
  for (const part of parts) {
    if (part === "..") out.pop();
    else if (part !== "." && part !== "") out.push(part);
  }
  return out.join("/");
}

/** Built-in number formats that show dates or times (ECMA-376 18.8.30, with the CJK ones). */
const BUILTIN_DATE_FORMATS = new Set([
  14, 15, 16, 17, 18, 19, 20, 21, 22, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 45, 46, 47, 50, 51,
  52, 53, 54, 55, 56, 57, 58,
]);

/** Whether an Excel number format shows a date or time (y m d h s b outside quotes and brackets). */
export function isDateFormat(format: string | undefined): boolean {
  if (!format) return false;
  const bare = format.replace(/\[[^\]]*]/g, "").replace(/"[^"]*"/g, "");
  return /[ymdhMsb]/.test(bare);
}

/** For each cell style (`s` attribute), whether its number format shows a date. */
export async function readDateStyles(input: Readable): Promise<boolean[]> {
  const custom = new Map<number, string>();
  const xfFormats: number[] = [];
  let inCellXfs = false;
  for await (const event of saxEvents(input)) {
    if (event.eventType === "text") continue;
    const name = localName(event.value.name);
    if (event.eventType === "closetag") {
      if (name === "cellXfs") inCellXfs = false;
      continue;
    }
    const attrs = event.value.attributes;
    if (name === "numFmt" && attrs.numFmtId !== undefined) {
      custom.set(Number(attrs.numFmtId), attrs.formatCode ?? "");
    } else if (name === "cellXfs") inCellXfs = true;
    else if (name === "xf" && inCellXfs) xfFormats.push(Number(attrs.numFmtId ?? 0));
  }
  return xfFormats.map((id) =>
    custom.has(id) ? isDateFormat(custom.get(id)) : BUILTIN_DATE_FORMATS.has(id),
  );
}
