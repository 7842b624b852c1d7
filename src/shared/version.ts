/**
 * The running release: the `version` of the package.json beside `src/` (a checkout) or `dist/`
 * (an installed package), read once at start. Semantic versioning, 0.x until the API is stable.
 */
import { readFileSync } from "node:fs";
import { z } from "zod";

const packageJsonSchema = z.object({ name: z.string(), version: z.string().min(1) });

function readPackageJson(): z.infer<typeof packageJsonSchema> {
  // src/shared/version.ts and dist/shared/version.js both sit two levels below the package root.
  const url = new URL("../../package.json", import.meta.url);
  return packageJsonSchema.parse(JSON.parse(readFileSync(url, "utf-8")));
}

const pkg = readPackageJson();

/** The package version, e.g. "0.2.0". */
export const VERSION: string = pkg.version;

/** What a component states in its first log line and `GET /version` answers. */
export function versionInfo(): { name: string; version: string; node: string } {
  return { name: pkg.name, version: pkg.version, node: process.version };
}
