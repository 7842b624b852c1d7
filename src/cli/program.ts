/**
 * The `shardfleet` command line. Each failure ends with one line on stderr and a documented
 * exit code; `--help` works on every command. Commands live in ./commands/, one module per
 * command or family; the entry point (main.ts) may add more (the demo).
 */
import { Command, CommanderError } from "commander";
import { ShardfleetError } from "../shared/errors.ts";
import { VERSION } from "../shared/version.ts";
import { CliError, EXIT } from "./cli-error.ts";
import { addControlCommands } from "./commands/control.ts";
import { addListCommand, addWatchCommand } from "./commands/list-watch.ts";
import { addLocalCommand } from "./commands/local-command.ts";
import {
  addCostCommand,
  addDownloadCommand,
  addStatusCommand,
  addSubmitCommand,
  addWhoamiCommand,
} from "./commands/operations.ts";
import { addRetryCommand, addRmCommand } from "./commands/redrive.ts";
import { addSimulateCommand } from "./commands/simulate.ts";
import { addTokenCommand } from "./commands/token-command.ts";

/** Adds a command to the program. */
export type AddCommand = (program: Command) => void;

/** The root command: name, version, help text, and errors raised as exceptions. */
function rootCommand(): Command {
  return (
    new Command("shardfleet")
      .description("Per-row batch work on cheap cloud capacity: submit a workbook, get one back.")
      .version(VERSION, "-V, --version", "print the shardfleet version")
      .addHelpText(
        "after",
        "\nAPI commands read SHARDFLEET_API_URL and SHARDFLEET_API_TOKEN (the bearer token, when the API requires one).\nExit codes: 0 ok/succeeded, 1 failed or cancelled, 2 succeeded with failures, 64 usage, 69 API unreachable, 75 not finished yet (status ID), 77 API token refused, 78 bad config.",
      )
      .showHelpAfterError("(run with --help for usage)")
      // Before any subcommand is added, so they inherit it: errors reach main() as exceptions.
      .exitOverride()
  );
}

/** The program with every command; `extra` commands (the demo) come before `simulate`. */
export function buildProgram(extra: readonly AddCommand[] = []): Command {
  const program = rootCommand();
  for (const add of [
    addLocalCommand,
    addSubmitCommand,
    addStatusCommand,
    addDownloadCommand,
    addCostCommand,
    addListCommand,
    addWatchCommand,
    addWhoamiCommand,
    addControlCommands,
    addTokenCommand,
    addRmCommand,
    addRetryCommand,
    ...extra,
    addSimulateCommand,
  ]) {
    add(program);
  }
  return program;
}

export async function main(argv: string[], extra: readonly AddCommand[] = []): Promise<void> {
  const program = buildProgram(extra);
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander already printed the message (or the help text).
      process.exitCode = err.exitCode === 0 ? 0 : EXIT.usage;
      return;
    }
    if (err instanceof CliError) {
      process.stderr.write(`shardfleet: ${err.message}\n`);
      process.exitCode = err.exitCode;
      return;
    }
    if (err instanceof ShardfleetError) {
      process.stderr.write(`shardfleet: ${err.message}\n`);
      process.exitCode = err.code === "CONFIG_INVALID" ? EXIT.config : EXIT.failed;
      return;
    }
    process.stderr.write(
      `shardfleet: unexpected error: ${(err as Error)?.message ?? String(err)}\n`,
    );
    process.exitCode = EXIT.failed;
  }
}
