/**
 * `shardfleet --help` and every command's: a one-line description each, and every option that
 * takes a value says what it is when left out (commander's "(default: …)" or the text's own).
 */
import type { Command } from "commander";
import { describe, expect, it } from "vitest";
import { EXIT } from "../../src/cli/cli-error.ts";
import { buildProgram } from "../../src/cli/program.ts";
import { addDemoCommand } from "../../src/demo/command.ts";

function allCommands(command: Command): Command[] {
  return command.commands.flatMap((c) => [c, ...allCommands(c)]);
}

const program = buildProgram([addDemoCommand]);
const commands = allCommands(program).filter((c) => c.name() !== "help");

describe("shardfleet --help", () => {
  it("describes every command in one line", () => {
    expect(commands.length).toBeGreaterThan(15);
    const bad = commands
      .filter((c) => c.description().trim() === "" || c.description().includes("\n"))
      .map((c) => c.name());
    expect(bad).toEqual([]);
  });

  it("says the default of every option that takes a value", () => {
    const bad = commands.flatMap((c) =>
      c.options
        .filter((o) => (o.required || o.optional) && !o.mandatory)
        .filter((o) => o.defaultValue === undefined && !/\bdefault\b/.test(o.description))
        .map((o) => `${c.name()} ${o.long}`),
    );
    expect(bad).toEqual([]);
  });

  it("lists every exit code the commands use", () => {
    const help = program.helpInformation() + helpAfter(program);
    const missing = Object.values(EXIT).filter((code) => !new RegExp(`\\b${code} `).test(help));
    expect(missing).toEqual([]);
  });
});

/** The text added after the help (commander keeps it out of helpInformation()). */
function helpAfter(command: Command): string {
  let text = "";
  command.configureOutput({ writeOut: (s) => (text += s), writeErr: () => {} });
  command.outputHelp();
  return text;
}

describe("shardfleet demo", () => {
  it("refuses a demo that could not run (no rows, no instances) as a usage error", async () => {
    for (const args of [
      ["--rows", "0"],
      ["--workers", "0"],
    ]) {
      const program = buildProgram([addDemoCommand]);
      program.configureOutput({ writeErr: () => {}, writeOut: () => {} });
      for (const c of program.commands) {
        c.configureOutput({ writeErr: () => {}, writeOut: () => {} });
        // Only the flags are under test: an accepted value must not start a real demo.
        if (c.name() === "demo") c.action(() => {});
      }
      await expect(program.parseAsync(["node", "shardfleet", "demo", ...args])).rejects.toThrow(
        /must be a whole number ≥ 1/,
      );
    }
  });
});
