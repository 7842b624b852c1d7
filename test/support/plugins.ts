/** Test support: transform plugins and inputs written into a test's temporary folder. */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";

/** Writes `<dir>/plugins/<file>` and returns the plugin directory (SHARDFLEET_PLUGIN_DIR). */
export async function writePlugin(dir: string, file: string, source: string): Promise<string> {
  const pluginDir = path.join(dir, "plugins");
  await mkdir(pluginDir, { recursive: true });
  await writeFile(path.join(pluginDir, file), source);
  return pluginDir;
}

/** A CSV with one column `n` holding 0 … rows - 1. */
export async function writeNumbersCsv(file: string, rows: number): Promise<void> {
  await writeFile(file, `n\n${Array.from({ length: rows }, (_, n) => n).join("\n")}\n`);
}

/** A transform plugin: column `double` is twice column `n`, each row after `options.rowMs` ms. */
export const PACED_DOUBLE_PLUGIN = `
export const columns = ["double"];
export default async function paced(row, options) {
  await new Promise((r) => setTimeout(r, options.rowMs));
  return { double: Number(row.n) * 2 };
}
`;
