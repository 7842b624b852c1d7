/**
 * Cuts a worksheet's inflated XML at row boundaries without parsing it, so the split costs one
 * inflate and a byte scan (native `indexOf`), not an XML parse and a value per cell. Each
 * worker parses its own slice (src/shared/slices.ts).
 *
 * What the scan decides, and why it matches the full reader (src/shared/workbook/sheet-xml.ts):
 * - Row boundaries: `<row …>` to `</row>` (with the sheet's namespace prefix, e.g. `<x:row>`),
 *   inside `<sheetData>`. Comments, CDATA sections and processing instructions are stepped over
 *   whole, so a `</row>` inside them does not end a row.
 * - Which rows are data: a row with a value (`<v>` holding something), a formula (`<f`) or an
 *   inline string (`<is>`). A row without any (`<row/>`, styled empty cells) is skipped, as the
 *   reader skips empty rows. A row whose values are all empty text (`<is><t/></is>`, a shared
 *   string that is "") passes the scan and reaches the worker as a row of empty cells.
 * - Row numbers: every row written to a slice has an `r` attribute the reader can trust: a row
 *   without one (or with one not after the row before) is given the number the reader would have
 *   given it, so notes name the same cells whatever rows were skipped in between.
 */

/** What the scan finds, in sheet order. */
export type SheetPiece =
  /** The sheet's `<dimension ref>`, before any row (for the row limit). */
  | { kind: "dimension"; ref: string }
  /** The first data row, as XML (the header row). */
  | { kind: "header"; xml: Buffer }
  /**
   * `rows` data rows as XML fragments, to be wrapped by `sliceDocument`; `mark` is where a scan
   * resumed after this slice starts.
   */
  | { kind: "slice"; parts: Buffer[]; rows: number; mark: CutMark };

/**
 * The scan's state just after a slice's last row: enough to resume the cut there without
 * scanning what came before (a split interrupted by a lost lease goes on from its last slice).
 */
export interface CutMark {
  /** Bytes of the sheet XML up to the end of the slice's last row. */
  at: number;
  /** Data rows up to and including the slice. */
  rows: number;
  /** The row number of the slice's last row (rows without their own number follow it). */
  lastRow: number;
  /** The sheet's namespace prefix (`x:` for `<x:row>`, or ""). */
  prefix: string;
}

export interface CutOptions {
  /** Data rows per slice; the last slice may be shorter. */
  rowsPerSlice: number;
  /** Called with the data rows seen so far before each is added (the row limit). */
  onRow?: (rows: number) => void;
  /**
   * Resume after the slice that left this mark: the bytes before it are skipped unscanned, and
   * no dimension or header piece is yielded (the scan that wrote the slice yielded them).
   */
  resume?: CutMark;
}

const LT = 0x3c;
const GT = 0x3e;
const SLASH = 0x2f;

/** The root element of a slice (any name would do; the reader only needs one root). */
export const SLICE_OPEN = Buffer.from("<slice>");
export const SLICE_CLOSE = Buffer.from("</slice>");

/** A slice's rows as one XML document. */
export function sliceDocument(parts: readonly Buffer[]): Buffer {
  return Buffer.concat([SLICE_OPEN, ...parts, SLICE_CLOSE]);
}

function isNameEnd(byte: number | undefined): boolean {
  // Whitespace, `>` or `/` end a tag name; anything else means a longer name (`<rowBreaks`).
  return (
    byte === GT ||
    byte === SLASH ||
    byte === 0x20 ||
    byte === 0x09 ||
    byte === 0x0a ||
    byte === 0x0d
  );
}

const ROW_NUMBER = /\sr\s*=\s*["'](\d+)["']/;
const ROW_ATTR = /\sr\s*=\s*("[^"]*"|'[^']*')/;

/** `indexOf` with the last answer remembered, so repeated searches stay linear. */
class Finder {
  #from = -1;
  #at = -1;
  constructor(
    private readonly pattern: Buffer,
    private buf: Buffer,
  ) {}

  get length(): number {
    return this.pattern.length;
  }

  reset(buf: Buffer): void {
    this.buf = buf;
    this.#from = -1;
    this.#at = -1;
  }

  next(from: number): number {
    // The remembered hit is still the next one if it lies at or after `from` and was found
    // from a point at or before it (nothing in between was skipped).
    if (this.#from !== -1 && this.#from <= from && (this.#at === -1 || this.#at >= from)) {
      return this.#at;
    }
    this.#from = from;
    this.#at = this.buf.indexOf(this.pattern, from);
    return this.#at;
  }
}

/** Needs more bytes to decide. */
const MORE = -2;

/**
 * Scans the chunks of one worksheet's XML and yields its dimension, its header row and slices
 * of `rowsPerSlice` data rows. Holds at most one slice's bytes (and one partial row) at a time.
 * Throws an Error for XML it cannot cut (a row that never closes).
 */
export async function* cutSheet(
  chunks: AsyncIterable<Buffer>,
  options: CutOptions,
): AsyncGenerator<SheetPiece> {
  let buf: Buffer = Buffer.alloc(0);
  let pos = 0;
  /** Where `buf` starts in the sheet XML. */
  let base = 0;
  let ended = false;
  /** The slice's rows so far; the last of them, back to back in `buf`, as one run [from, to). */
  let parts: Buffer[] = [];
  let runFrom = -1;
  let runTo = -1;
  /** Ends the run of rows in `buf` (before `buf` changes, or the slice is yielded). */
  const endRun = () => {
    if (runFrom < 0) return;
    parts.push(buf.subarray(runFrom, runTo));
    runFrom = -1;
  };
  const it = chunks[Symbol.asyncIterator]();
  /** Appends the next chunk to what is left of the buffer; false at the end of input. */
  const more = async (keepFrom: number): Promise<boolean> => {
    const next = await it.next();
    if (next.done) {
      ended = true;
      return false;
    }
    endRun();
    base += keepFrom;
    buf = keepFrom >= buf.length ? next.value : Buffer.concat([buf.subarray(keepFrom), next.value]);
    pos -= keepFrom;
    return true;
  };

  try {
    // The head, up to `<sheetData`: the namespace prefix and the dimension.
    let prefix: string | undefined;
    let selfClosing = false;
    const resume = options.resume;
    if (resume) {
      // Skip to the mark: inflated, counted, not scanned.
      while (base + buf.length < resume.at) {
        if (!(await more(buf.length))) throw new Error("worksheet XML ends before the resume mark");
      }
      pos = resume.at - base;
      prefix = resume.prefix;
    }
    for (; resume === undefined; ) {
      const head = buf.toString("latin1");
      const m = /<([A-Za-z_][\w.-]*:)?sheetData(\s[^>]*)?(\/?)>/.exec(head);
      if (m) {
        prefix = m[1] ?? "";
        selfClosing = m[3] === "/";
        const dim = new RegExp(
          `<${prefix.replace(/\./g, "\\.")}dimension\\s[^>]*?\\bref\\s*=\\s*["']([^"']*)["']`,
        ).exec(head.slice(0, m.index));
        if (dim?.[1] !== undefined) yield { kind: "dimension", ref: dim[1] };
        pos = m.index + m[0].length;
        break;
      }
      if (!(await more(0))) return; // no sheetData: no rows
    }
    if (selfClosing) return;

    const p = prefix ?? "";
    const OPEN = Buffer.from(`<${p}row`);
    const CLOSE = Buffer.from(`</${p}row>`);
    const END = Buffer.from(`</${p}sheetData`);
    const finders = {
      open: new Finder(OPEN, buf),
      close: new Finder(CLOSE, buf),
      end: new Finder(END, buf),
      bang: new Finder(Buffer.from("<!"), buf),
      pi: new Finder(Buffer.from("<?"), buf),
      v: new Finder(Buffer.from(`<${p}v>`), buf),
      f: new Finder(Buffer.from(`<${p}f`), buf),
      is: new Finder(Buffer.from(`<${p}is>`), buf),
    };
    const resetAll = () => {
      for (const f of Object.values(finders)) f.reset(buf);
    };
    resetAll();

    /** The end of the comment, CDATA or PI starting at `at`, or MORE. */
    const skipConstruct = (at: number): number => {
      const [terminator, skip] =
        buf[at + 1] === 0x3f
          ? ["?>", 2]
          : buf.subarray(at, at + 4).toString("latin1") === "<!--"
            ? ["-->", 4]
            : buf.subarray(at, at + 9).toString("latin1") === "<![CDATA["
              ? ["]]>", 9]
              : [">", 2];
      if (buf.length < at + 9 && !ended) return MORE;
      const end = buf.indexOf(terminator, at + skip);
      return end === -1 ? MORE : end + terminator.length;
    };
    /** The next `which` outside comments, CDATA and PIs from `from`; -1 none yet; MORE. */
    const find = (which: Finder, from: number): number => {
      for (;;) {
        const hit = which.next(from);
        const bang = finders.bang.next(from);
        const pi = finders.pi.next(from);
        const construct = bang === -1 ? pi : pi === -1 ? bang : Math.min(bang, pi);
        if (construct === -1 || hit === -1 || hit < construct) return hit;
        const after = skipConstruct(construct);
        if (after === MORE) return MORE;
        from = after;
      }
    };
    /** Whether the row body [from, to) holds a value, a formula or an inline string. */
    const hasValue = (from: number, to: number): boolean => {
      for (let at = finders.v.next(from); at !== -1 && at < to; at = finders.v.next(at + 1)) {
        if (buf[at + finders.v.length] !== LT) return true; // not `<v></v>`
      }
      for (let at = finders.f.next(from); at !== -1 && at < to; at = finders.f.next(at + 1)) {
        if (isNameEnd(buf[at + finders.f.length])) return true;
      }
      const is = finders.is.next(from);
      return is !== -1 && is < to;
    };

    let lastRow = resume?.lastRow ?? 0;
    let dataRows = resume?.rows ?? 0;
    let headerSeen = resume !== undefined;
    let inSlice = 0;
    /** The mark after the last data row added. */
    let mark: CutMark = resume ?? { at: 0, rows: 0, lastRow: 0, prefix: p };

    for (;;) {
      const open = find(finders.open, pos);
      const end = find(finders.end, pos);
      if (end >= 0 && (open < 0 || end < open)) break; // </sheetData>: nothing after is data
      if (open < 0) {
        // Keep a tail long enough to hold a pattern cut by the chunk boundary.
        const keep = open === MORE ? pos : Math.max(pos, buf.length - 64);
        if (!(await more(keep))) break;
        resetAll();
        continue;
      }
      const tagEnd = buf.indexOf(GT, open);
      if (tagEnd === -1 || open + OPEN.length >= buf.length) {
        if (!(await more(open))) throw new Error("worksheet XML ends inside a <row> tag");
        resetAll();
        continue;
      }
      if (!isNameEnd(buf[open + OPEN.length])) {
        pos = open + OPEN.length; // a longer name that starts with "row"
        continue;
      }
      const tag = buf.toString("latin1", open, tagEnd + 1);
      const r = Number(ROW_NUMBER.exec(tag)?.[1] ?? Number.NaN);
      const number = Number.isInteger(r) && r > lastRow ? r : lastRow + 1;
      if (buf[tagEnd - 1] === SLASH) {
        lastRow = number; // <row r="5"/>: no cells
        pos = tagEnd + 1;
        continue;
      }
      const close = find(finders.close, tagEnd + 1);
      if (close < 0) {
        if (!(await more(open))) throw new Error("worksheet XML ends inside a <row>");
        resetAll();
        continue;
      }
      lastRow = number;
      const rowEnd = close + CLOSE.length;
      pos = rowEnd;
      if (!hasValue(tagEnd + 1, close)) continue;

      // Rows whose own number the reader could not trust are given it.
      const renumbered =
        number === r
          ? undefined
          : Buffer.from(
              `<${p}row r="${number}"${tag.slice(OPEN.length).replace(ROW_ATTR, "")}`,
              "latin1",
            );
      if (!headerSeen) {
        headerSeen = true;
        const xml = renumbered
          ? Buffer.concat([renumbered, buf.subarray(tagEnd + 1, rowEnd)])
          : Buffer.from(buf.subarray(open, rowEnd));
        yield { kind: "header", xml };
        continue;
      }
      dataRows++;
      options.onRow?.(dataRows);
      if (renumbered) {
        endRun();
        parts.push(renumbered);
        runFrom = tagEnd + 1;
      } else if (runFrom < 0 || runTo !== open) {
        // Not right after the row before (a skipped row or a gap between): a new run.
        endRun();
        runFrom = open;
      }
      runTo = rowEnd;
      inSlice++;
      mark = { at: base + rowEnd, rows: dataRows, lastRow, prefix: p };
      if (inSlice === options.rowsPerSlice) {
        endRun();
        const out = parts;
        parts = [];
        inSlice = 0;
        yield { kind: "slice", parts: out, rows: options.rowsPerSlice, mark };
      }
    }
    endRun();
    if (inSlice > 0) yield { kind: "slice", parts, rows: inSlice, mark };
  } finally {
    await it.return?.();
  }
}
