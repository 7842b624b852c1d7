/**
 * `{column}` templates (http-enrich's `url` and `body`): compiled once, rendered per row. The
 * intake and the worker share them, so both read a template the same way.
 */
import type { Cell } from "./schemas/cells.ts";

/** A template split into literal text and column references. */
export interface Template {
  parts: Array<{ text: string } | { column: string }>;
  /** Every column named, once each, in order of first use. */
  columns: string[];
}

const PLACEHOLDER = /\{([^{}]+)\}/g;

export function compileTemplate(source: string): Template {
  const parts: Template["parts"] = [];
  const columns: string[] = [];
  let last = 0;
  for (const m of source.matchAll(PLACEHOLDER)) {
    if (m.index > last) parts.push({ text: source.slice(last, m.index) });
    const column = m[1]!;
    parts.push({ column });
    if (!columns.includes(column)) columns.push(column);
    last = m.index + m[0].length;
  }
  if (last < source.length) parts.push({ text: source.slice(last) });
  return { parts, columns };
}

function cellText(value: Cell | undefined): string {
  if (value === null || value === undefined) return "";
  if (value instanceof Date) return value.toISOString();
  return String(value);
}

export function render(
  template: Template,
  values: Record<string, Cell>,
  encode: (s: string) => string,
): string {
  let out = "";
  for (const part of template.parts) {
    out += "text" in part ? part.text : encode(cellText(values[part.column]));
  }
  return out;
}

/** What a URL template fixes before any row is seen. */
export type UrlTemplateShape =
  | {
      ok: true;
      /** The scheme (`http:` / `https:` when valid). */
      protocol: string;
      /** The host when no row value can change it (URL-normalised: `2130706433` → `127.0.0.1`). */
      literalHost?: string;
      /** The port when no row value can change it (the scheme's default when none is given). */
      literalPort?: number;
    }
  | { ok: false };

/**
 * Renders the template with two different harmless values (digits fit in a host, a port and
 * a path alike); what stays equal between the two does not depend on the row.
 */
export function urlTemplateShape(template: Template): UrlTemplateShape {
  let a: URL;
  let b: URL;
  try {
    a = new URL(render(template, {}, () => "1"));
    b = new URL(render(template, {}, () => "2"));
  } catch {
    return { ok: false };
  }
  if (a.protocol !== b.protocol) return { ok: false };
  const portOf = (u: URL) => (u.port ? Number(u.port) : u.protocol === "https:" ? 443 : 80);
  return {
    ok: true,
    protocol: a.protocol,
    ...(a.hostname === b.hostname ? { literalHost: a.hostname } : {}),
    ...(portOf(a) === portOf(b) ? { literalPort: portOf(a) } : {}),
  };
}
