/**
 * The worker-thread side of the `transform` task (piscina). Plain JavaScript on purpose: a
 * thread does not inherit the parent's TypeScript loader under every runner (vitest, `node
 * --import tsx`), and a .mjs file loads the same way under all of them.
 *
 * Plugin module contract (also in plugins/README.md):
 *   export default function (row, options) { return { column: value } }   // or a Promise of it
 *   export const columns = ["column"];                                      // optional
 * `row` is `{ header: value }` with strings, numbers, booleans, null and Dates; `options` is the
 * spec's `task.options.options`. A throw (or rejection) fails only that row.
 *
 * Tasks (from transform.ts):
 *   { kind: "describe", modulePath }                 → { columns: string[] }
 *   { kind: "rows", modulePath, options, rows: [{ i, c: { header: EncodedCell } }] }
 *                                                    → [{ i, r } | { i, e }] (ResultRow[])
 */
import { pathToFileURL } from "node:url";

/** modulePath → Promise<{ fn, columns }>; a thread loads each plugin once. */
const plugins = new Map();

function loadPlugin(modulePath) {
  let loaded = plugins.get(modulePath);
  if (!loaded) {
    loaded = import(pathToFileURL(modulePath).href).then((mod) => {
      if (typeof mod.default !== "function") {
        throw new Error(`plugin ${modulePath} has no default export function`);
      }
      const columns = mod.columns ?? [];
      if (!Array.isArray(columns) || columns.some((c) => typeof c !== "string" || c === "")) {
        throw new Error(`plugin ${modulePath}: "columns" must be an array of non-empty strings`);
      }
      return { fn: mod.default, columns: [...columns] };
    });
    plugins.set(modulePath, loaded);
  }
  return loaded;
}

// The same encoding as src/shared/schemas/cells.ts (encodeCell/decodeCell), re-implemented
// because this thread runs without a TypeScript loader: dates travel as { $date: ISO }.
function decodeCell(value) {
  if (value !== null && typeof value === "object") return new Date(value.$date);
  return value;
}

function encodeResultValue(value) {
  if (value === undefined || value === null) return null;
  if (value instanceof Date) {
    return Number.isNaN(value.getTime()) ? null : { $date: value.toISOString() };
  }
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      return Number.isFinite(value) ? value : String(value);
    case "bigint":
      return String(value);
    case "object":
      return JSON.stringify(value);
    default:
      return String(value);
  }
}

function oneLine(message) {
  const line = message.replace(/\s*[\r\n]+\s*/g, " ").trim();
  return line.length > 500 ? `${line.slice(0, 499)}…` : line;
}

function describeError(err) {
  if (err instanceof Error) return oneLine(err.message || err.name);
  return oneLine(String(err));
}

async function runRow(fn, row, options) {
  const values = {};
  for (const [header, cell] of Object.entries(row.c)) values[header] = decodeCell(cell);
  try {
    const out = await fn(values, options);
    if (out === undefined || out === null) return { i: row.i, r: {} };
    if (typeof out !== "object" || Array.isArray(out)) {
      return {
        i: row.i,
        e: `plugin returned ${Array.isArray(out) ? "an array" : typeof out}, expected an object`,
      };
    }
    const r = {};
    for (const [column, value] of Object.entries(out)) r[column] = encodeResultValue(value);
    return { i: row.i, r };
  } catch (err) {
    return { i: row.i, e: describeError(err) };
  }
}

export default async function run(task) {
  const plugin = await loadPlugin(task.modulePath);
  if (task.kind === "describe") return { columns: plugin.columns };
  const out = [];
  // One row at a time: the thread is the unit of CPU parallelism.
  for (const row of task.rows) out.push(await runRow(plugin.fn, row, task.options));
  return out;
}
