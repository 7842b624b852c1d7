/**
 * The `transform` plugin directory: both sides read it, the worker to load a plugin, the
 * scheduler to refuse a spec naming a plugin the workers do not have (they run the same image).
 */
import type { Dirent } from "node:fs";
import { readdir } from "node:fs/promises";
import path from "node:path";

/** A plugin is `${dir}/${name}.mjs` or `.js`, looked for in this order. */
export const PLUGIN_EXTENSIONS = [".mjs", ".js"] as const;

/** The plugin names in `dir`, sorted; empty when the directory does not exist. */
export async function listPlugins(dir: string): Promise<string[]> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const names = new Set<string>();
  for (const entry of entries) {
    const ext = path.extname(entry.name);
    if ((PLUGIN_EXTENSIONS as readonly string[]).includes(ext) && !entry.isDirectory()) {
      names.add(entry.name.slice(0, -ext.length));
    }
  }
  return [...names].sort();
}
