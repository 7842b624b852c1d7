/**
 * A fast tokenizer for the XML of a shard's slice (`<slice>` around a run of the sheet's own
 * `<row>` elements, src/scheduler/workbook/sheet-slicer.ts), feeding the same state machine as
 * saxes does (./sheet-xml.ts's SheetRowReader), so a row means the same whichever read it.
 *
 * Why: saxes checks every character one at a time and builds an object per tag and attribute; a
 * slice is ~200 bytes a row and the worker parses every row it runs, so the tokenizer was most
 * of the worker's CPU per row. This one jumps from `<` to `<` with indexOf, reuses the strings of
 * the few tag names a sheet has, keeps only the attributes the reader reads (r, s, t, ref: the
 * others are checked, not kept) and slices text only where the reader keeps it.
 *
 * It reads only the plain subset producers write (elements, attributes, text, the five named
 * entities and character references, LF or TAB in text). Anything else (a comment, CDATA, a
 * processing instruction, a CR, a character XML does not allow, a name outside ASCII, an unknown
 * entity, a mismatched or unclosed tag, a duplicate attribute...) makes it give up, and the
 * caller drops what it fed and parses the slice with saxes: the reference, including its errors
 * for malformed XML.
 */
import type { SheetRowReader } from "./sheet-xml.ts";

/** Characters that make the fast path give up on the whole document (see the top). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters to refuse.
const UNSUPPORTED_CHAR = /[\x00-\x08\x0B\x0C\x0D\x0E-\x1F\uFFFE\uFFFF]/;
const ENTITY = /&(#x[0-9A-Fa-f]+|#[0-9]+|amp|lt|gt|quot|apos);/g;
const NAMED: Readonly<Record<string, string>> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
};

const TAB = 0x09;
const LF = 0x0a;
const SPACE = 0x20;
const LT = 0x3c;
const GT = 0x3e;
const SLASH = 0x2f;
const EQ = 0x3d;
const QUOT = 0x22;
const APOS = 0x27;

function isSpace(c: number): boolean {
  return c === SPACE || c === LF || c === TAB;
}

/** An ASCII character that may start an XML name. */
function isNameStart(c: number): boolean {
  const upper = c & ~0x20;
  return (upper >= 0x41 && upper <= 0x5a) || c === 0x5f;
}

/** An ASCII character that may follow in an XML name (a prefix's `:` too). */
function isNameChar(c: number): boolean {
  return isNameStart(c) || (c >= 0x30 && c <= 0x3a) || c === 0x2d || c === 0x2e;
}

/** An XML 1.0 character. */
function isXmlChar(code: number): boolean {
  if (code < SPACE) return code === TAB || code === LF || code === 0x0d;
  return (
    code <= 0xd7ff || (code >= 0xe000 && code <= 0x10ffff && code !== 0xfffe && code !== 0xffff)
  );
}

class GiveUp extends Error {}

/** `raw` with its entities decoded; gives up on an unknown one or a bare `&`. */
function decode(raw: string): string {
  if (raw.indexOf("&") === -1) return raw;
  // Any `&` not starting a known entity is not XML (check the raw text, not the decoded one).
  if (raw.replace(ENTITY, "").indexOf("&") !== -1) throw new GiveUp();
  return raw.replace(ENTITY, (_, name: string) => {
    if (name.charCodeAt(0) !== 0x23) return NAMED[name] as string;
    const code =
      name.charCodeAt(1) === 0x78
        ? Number.parseInt(name.slice(2), 16)
        : Number.parseInt(name.slice(1), 10);
    if (!isXmlChar(code)) throw new GiveUp();
    return String.fromCodePoint(code);
  });
}

/** The attributes the reader reads; the others are checked and dropped. */
type Kept = {
  r: string | undefined;
  s: string | undefined;
  t: string | undefined;
  ref: string | undefined;
};

/**
 * Feeds `xml` (a whole slice document) to `reader`, event by event; false when the document is
 * outside the subset read here: the reader was then fed part of it and is to be dropped (parse
 * the document with saxes and a new reader). Stops early once the reader has `ended`.
 */
export function feedRowXml(xml: string, reader: SheetRowReader): boolean {
  if (
    UNSUPPORTED_CHAR.test(xml) ||
    xml.includes("<!") ||
    xml.includes("<?") ||
    xml.includes("]]>")
  ) {
    return false;
  }
  try {
    return new Scan(xml, reader).run();
  } catch (err) {
    if (err instanceof GiveUp) return false;
    throw err;
  }
}

class Scan {
  readonly #xml: string;
  readonly #reader: SheetRowReader;
  /** Tag names seen, one string each (so a name costs no new string after its first use). */
  readonly #names: string[] = [];
  readonly #open: string[] = [];
  /** Attribute names' [start, end) of the tag being read, for the duplicate check. */
  readonly #attrs: number[] = [];
  readonly #kept: Kept = { r: undefined, s: undefined, t: undefined, ref: undefined };
  /** Position of the next `&` at or after the text being read (-1: none left). */
  #amp = -2;

  constructor(xml: string, reader: SheetRowReader) {
    this.#xml = xml;
    this.#reader = reader;
  }

  run(): boolean {
    const xml = this.#xml;
    const reader = this.#reader;
    const open = this.#open;
    const len = xml.length;
    let pos = 0;
    let rootClosed = false;
    while (pos < len && !reader.ended) {
      const lt = xml.indexOf("<", pos);
      const textEnd = lt === -1 ? len : lt;
      if (textEnd > pos) this.#text(pos, textEnd, open.length === 0);
      if (lt === -1) break;
      if (xml.charCodeAt(lt + 1) === SLASH) {
        const name = open.pop();
        if (name === undefined || !xml.startsWith(name, lt + 2)) return false;
        let at = lt + 2 + name.length;
        while (isSpace(xml.charCodeAt(at))) at++;
        if (xml.charCodeAt(at) !== GT) return false;
        reader.close(name);
        if (open.length === 0) rootClosed = true;
        pos = at + 1;
        continue;
      }
      if (rootClosed) return false;
      let at = lt + 1;
      if (!isNameStart(xml.charCodeAt(at))) return false;
      while (isNameChar(xml.charCodeAt(at))) at++;
      const name = this.#name(lt + 1, at);
      const end = this.#attributes(at);
      if (end < 0) return false;
      reader.open(name, this.#kept);
      if (xml.charCodeAt(end - 2) === SLASH) {
        reader.close(name);
        if (open.length === 0) rootClosed = true;
      } else open.push(name);
      pos = end;
    }
    return reader.ended || (open.length === 0 && rootClosed);
  }

  /** Text in [from, to): fed when the reader keeps it, checked for entities when not. */
  #text(from: number, to: number, outsideRoot: boolean): void {
    const xml = this.#xml;
    if (outsideRoot) {
      for (let k = from; k < to; k++) if (!isSpace(xml.charCodeAt(k))) throw new GiveUp();
      return;
    }
    if (this.#reader.capturing) {
      this.#reader.text(decode(xml.slice(from, to)));
      return;
    }
    if (this.#hasAmp(from, to)) decode(xml.slice(from, to));
  }

  /** Whether [from, to) holds a `&` (positions only grow, so the search stays linear). */
  #hasAmp(from: number, to: number): boolean {
    if (this.#amp !== -1 && this.#amp < from) this.#amp = this.#xml.indexOf("&", from);
    return this.#amp !== -1 && this.#amp < to;
  }

  /** The one string of the tag name at [from, to). */
  #name(from: number, to: number): string {
    const xml = this.#xml;
    const length = to - from;
    for (const name of this.#names) {
      if (name.length === length && xml.startsWith(name, from)) return name;
    }
    const name = xml.slice(from, to);
    this.#names.push(name);
    return name;
  }

  /**
   * Reads the attributes from `at` (just after the tag name) into #kept; returns the position
   * after the tag's `>` (`/>` for a self-closing one), or -1 when it is not XML read here.
   */
  #attributes(start: number): number {
    const xml = this.#xml;
    const kept = this.#kept;
    const attrs = this.#attrs;
    kept.r = kept.s = kept.t = kept.ref = undefined;
    attrs.length = 0;
    let at = start;
    for (;;) {
      let c = xml.charCodeAt(at);
      const spaced = isSpace(c);
      while (isSpace(c)) c = xml.charCodeAt(++at);
      if (c === GT) return at + 1;
      if (c === SLASH) return xml.charCodeAt(at + 1) === GT ? at + 2 : -1;
      // An attribute: white space before it, a name, `=`, a quoted value.
      if (!spaced || !isNameStart(c)) return -1;
      const nameStart = at;
      while (isNameChar(xml.charCodeAt(at))) at++;
      const nameEnd = at;
      if (this.#duplicate(nameStart, nameEnd)) return -1;
      attrs.push(nameStart, nameEnd);
      c = xml.charCodeAt(at);
      while (isSpace(c)) c = xml.charCodeAt(++at);
      if (c !== EQ) return -1;
      c = xml.charCodeAt(++at);
      while (isSpace(c)) c = xml.charCodeAt(++at);
      if (c !== QUOT && c !== APOS) return -1;
      const close = xml.indexOf(c === QUOT ? '"' : "'", at + 1);
      if (close === -1) return -1;
      // `<` is not allowed in a value; white space in one is normalised by XML parsers.
      for (let k = at + 1; k < close; k++) {
        const v = xml.charCodeAt(k);
        if (v === LT || v === TAB || v === LF) return -1;
      }
      const length = nameEnd - nameStart;
      const first = xml.charCodeAt(nameStart);
      if (length === 1 && (first === 0x72 || first === 0x73 || first === 0x74)) {
        const value = this.#value(at + 1, close);
        if (first === 0x72) kept.r = value;
        else if (first === 0x73) kept.s = value;
        else kept.t = value;
      } else if (length === 3 && xml.startsWith("ref", nameStart)) {
        kept.ref = this.#value(at + 1, close);
      } else if (this.#hasAmp(at + 1, close)) {
        decode(xml.slice(at + 1, close));
      }
      at = close + 1;
    }
  }

  #value(from: number, to: number): string {
    const raw = this.#xml.slice(from, to);
    return this.#hasAmp(from, to) ? decode(raw) : raw;
  }

  /** Whether the attribute name at [from, to) was already read in this tag. */
  #duplicate(from: number, to: number): boolean {
    const xml = this.#xml;
    const attrs = this.#attrs;
    for (let k = 0; k < attrs.length; k += 2) {
      const start = attrs[k] as number;
      const end = attrs[k + 1] as number;
      if (end - start !== to - from) continue;
      let same = true;
      for (let j = 0; j < end - start && same; j++) {
        same = xml.charCodeAt(start + j) === xml.charCodeAt(from + j);
      }
      if (same) return true;
    }
    return false;
  }
}
