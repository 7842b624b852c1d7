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
 *   { kind: "rows", modulePath, options, headers, indices, cells }
 *     `cells`: each row's cells in `headers` order, one row after the other (Dates as Dates)
 *                                                    → { columns, rows } (batchResultSchema:
 *     per row its error text, null for no result columns, or its values by position in
 *     `columns`, encoded as EncodedCell, undefined where the row has no such column)
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

// The same encoding as src/shared/schemas/cells.ts (encodeCell), re-implemented because this
// thread runs without a TypeScript loader: dates go back as { $date: ISO } (results are JSON).
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

/**
 * One row's entry in the batch result: its error text, null for a result without columns, or
 * its values by position in `columns` (which grows as new columns appear).
 */
async function runRow(fn, values, options, columns, positionOf) {
  try {
    const out = await fn(values, options);
    if (out === undefined || out === null) return null;
    if (typeof out !== "object" || Array.isArray(out)) {
      return `plugin returned ${Array.isArray(out) ? "an array" : typeof out}, expected an object`;
    }
    const entries = Object.entries(out);
    if (entries.length === 0) return null;
    const row = [];
    for (const [column, value] of entries) {
      // As an object's key would: a `__proto__` result is no column.
      if (column === "__proto__") continue;
      let at = positionOf.get(column);
      if (at === undefined) {
        at = columns.length;
        columns.push(column);
        positionOf.set(column, at);
      }
      while (row.length < at) row.push(undefined);
      row[at] = encodeResultValue(value);
    }
    return row;
  } catch (err) {
    return describeError(err);
  }
}

export default async function run(task) {
  const plugin = await loadPlugin(task.modulePath);
  if (task.kind === "describe") return { columns: plugin.columns };
  const { headers, indices, cells } = task;
  const width = headers.length;
  const columns = [];
  const positionOf = new Map();
  const rows = [];
  // One row at a time: the thread is the unit of CPU parallelism.
  for (let k = 0; k < indices.length; k++) {
    const values = {};
    for (let c = 0; c < width; c++) values[headers[c]] = cells[k * width + c];
    rows.push(await runRow(plugin.fn, values, task.options, columns, positionOf));
  }
  return { columns, rows };
}
