/**
 * `shardfleet demo`: registered by the CLI's entry point (src/cli/main.ts), so the CLI program
 * never imports the demo; the demo itself (./run-demo.ts) is imported only when it runs.
 */
import type { Command } from "commander";
import { wholeNumberOption } from "../cli/options.ts";

/** `shardfleet demo`: a real operation end to end on the local stack. */
export function addDemoCommand(program: Command): void {
  program
    .command("demo")
    .description(
      "run a real operation end to end on the local stack (customers × a local tax registry)",
    )
    .option(
      "--rows <n>",
      "customers in the generated workbook",
      wholeNumberOption("--rows", 1),
      20_000,
    )
    .option(
      "--workers <n>",
      "the most local instances the fleet manager launches",
      wholeNumberOption("--workers", 1),
      3,
    )
    .option("--out <dir>", "output folder", "out")
    .action(async (opts: { rows: number; workers: number; out: string }) => {
      const { runDemo } = await import("./run-demo.ts");
      const result = await runDemo({ rows: opts.rows, workers: opts.workers, outDir: opts.out });
      process.exitCode = result.status === "failed" || result.status === "cancelled" ? 1 : 0;
    });
}
