/**
 * `shardfleet cancel|pause|resume ID`: operator control of one operation. One line out (the id
 * and the status it is in now); a refusal (an unknown id, a state that does not allow it) is one
 * line on stderr and exit 1, like the other API commands.
 */
import type { Command } from "commander";
import { apiClient, apiOption, tokenOption } from "../api-options.ts";

const ACTIONS = {
  cancel: "cancel an operation: its shards stop, the rows done so far are kept in its output",
  pause: "pause an operation: no new shard starts, running ones checkpoint; its instances scale in",
  resume: "resume a paused operation from its checkpoints",
} as const;

/** Adds `cancel`, `pause` and `resume`. */
export function addControlCommands(program: Command): void {
  for (const [action, description] of Object.entries(ACTIONS) as [keyof typeof ACTIONS, string][]) {
    program
      .command(action)
      .description(description)
      .argument("<id>", "operation id")
      .option(...apiOption)
      .option(...tokenOption)
      .action(async (id: string, opts: { api: string; token?: string }) => {
        const view = await apiClient(opts).control(id, action);
        process.stdout.write(`${view.id} ${view.status}\n`);
      });
  }
}
