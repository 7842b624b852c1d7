/**
 * vitest global setup: builds the web console's bundle (esbuild, about a second) so the
 * scheduler serves a current console to the tests that open it, from a fresh clone too.
 */
import { buildConsole } from "../../scripts/build-console.ts";

export default async function setup(): Promise<void> {
  await buildConsole();
}
