/**
 * Builds the web console (src/console/) into one bundle with esbuild: `app.js` and `app.css`
 * (uPlot's stylesheet included) beside `index.html`, in `dist/console/` by default. The scheduler
 * serves that folder (src/scheduler/api/console-routes.ts); nothing is fetched at run time.
 * `npm run build` runs it, and so does the test suite's global setup.
 */
import { copyFile, mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const CONSOLE_SOURCE = path.join(root, "src/console");
export const CONSOLE_OUT = path.join(root, "dist/console");

export async function buildConsole(outDir: string = CONSOLE_OUT): Promise<void> {
  await mkdir(outDir, { recursive: true });
  await build({
    entryPoints: { app: path.join(CONSOLE_SOURCE, "main.tsx") },
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    target: ["es2022"],
    jsx: "automatic",
    jsxImportSource: "preact",
    outdir: outDir,
    sourcemap: false,
    legalComments: "linked",
    logLevel: "warning",
  });
  await copyFile(path.join(CONSOLE_SOURCE, "index.html"), path.join(outDir, "index.html"));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await buildConsole(process.argv[2] ?? CONSOLE_OUT);
}
