/**
 * An xlsx workbook's shared-string table (`xl/sharedStrings.xml`) as plain text: rich text runs
 * joined, phonetic guides left out. Read by the scheduler (the header row) and by workers (the
 * table is stored once per operation, see ../slices.ts).
 */
import { localName, saxBatches } from "./sax.ts";

export interface SharedStringsOptions {
  /** Stop once this many strings are read (the rest of the part is not parsed). @default all */
  count?: number | undefined;
}

/**
 * The shared strings in table order. Each string is cut at `maxChars + 1` characters: enough to
 * know it is over the cell limit.
 */
export async function readSharedStrings(
  input: AsyncIterable<Buffer | string>,
  maxChars: number,
  options: SharedStringsOptions = {},
): Promise<string[]> {
  const out: string[] = [];
  const count = options.count ?? Number.POSITIVE_INFINITY;
  if (count <= 0) return out;
  let inItem = false;
  let inPhonetic = false;
  let capturing = false;
  let text = "";
  for await (const batch of saxBatches(input)) {
    for (const event of batch) {
      if (event.eventType === "text") {
        if (capturing && text.length <= maxChars) text += event.value;
        continue;
      }
      const name = localName(event.value.name);
      if (event.eventType === "opentag") {
        if (name === "si") {
          inItem = true;
          text = "";
        } else if (name === "rPh") inPhonetic = true;
        else if (name === "t" && inItem && !inPhonetic) capturing = true;
      } else if (name === "t") capturing = false;
      else if (name === "rPh") inPhonetic = false;
      else if (name === "si") {
        inItem = false;
        out.push(text.length > maxChars + 1 ? text.slice(0, maxChars + 1) : text);
        if (out.length >= count) return out;
      }
    }
  }
  return out;
}
