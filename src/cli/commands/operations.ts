/**
 * The commands that call the scheduler API: submit, status, download, cost, whoami. Each parses
 * the API's answers with the shared contracts (through ApiClient) and prints for people or --json.
 */
import { createWriteStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { type Command, Option } from "commander";
import { formatCostTable } from "../../shared/cost-format.ts";
import { TERMINAL_STATUSES } from "../../shared/schemas/operation.ts";
import { apiClient, apiOption, tokenOption } from "../api-options.ts";
import { CliError, EXIT } from "../cli-error.ts";
import { wholeNumberOption } from "../options.ts";
import { exitCodeFor, summarize, waitForOperation } from "../wait.ts";

async function readSpec(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, "utf-8");
  } catch {
    throw new CliError(`cannot read spec file ${file}`, EXIT.usage);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new CliError(
      `spec file ${file} is not valid JSON: ${(err as Error).message}`,
      EXIT.usage,
    );
  }
}

/** `shardfleet submit FILE --spec SPEC [--wait]`. */
export function addSubmitCommand(program: Command): void {
  program
    .command("submit")
    .description("submit an operation: a workbook (xlsx or csv) and a JSON spec")
    .argument("<file>", "input workbook (.xlsx or .csv)")
    .requiredOption("--spec <file>", "operation spec (JSON): task, options, shard size")
    .option(
      "--shard-size <n>",
      "rows per shard, overriding the spec (default: the spec's shardSize, else 500)",
      wholeNumberOption("--shard-size", 0),
    )
    .option(
      "--wait",
      "follow the operation with a progress bar until it ends; rides out API outages (unreachable, timeouts, 5xx, 429) for up to 5 minutes",
    )
    .option(...apiOption)
    .option(...tokenOption)
    .action(
      async (
        file: string,
        opts: { spec: string; shardSize?: number; wait?: boolean; api: string; token?: string },
      ) => {
        const spec = (await readSpec(opts.spec)) as Record<string, unknown>;
        if (opts.shardSize !== undefined) spec.shardSize = opts.shardSize;
        const client = apiClient(opts);
        const { id } = await client.submit(file, spec);
        process.stdout.write(`${id}\n`);
        if (opts.wait) {
          const view = await waitForOperation(client, id);
          process.stdout.write(`${summarize(view)}\n`);
          process.exitCode = exitCodeFor(view.status);
        }
      },
    );
}

/** `shardfleet status [ID]`: one operation, or the newest. */
export function addStatusCommand(program: Command): void {
  program
    .command("status")
    .description("show an operation's status, or the newest operations when no id is given")
    .argument("[id]", "operation id")
    .option("--json", "print the raw JSON")
    .option(...apiOption)
    .option(...tokenOption)
    .action(
      async (id: string | undefined, opts: { json?: boolean; api: string; token?: string }) => {
        const client = apiClient(opts);
        if (!id) {
          const { operations } = await client.list();
          if (opts.json) process.stdout.write(`${JSON.stringify(operations, null, 2)}\n`);
          else if (operations.length === 0) process.stdout.write("no operations yet\n");
          else
            for (const op of operations)
              process.stdout.write(
                `${op.id}  ${op.tenant ? `${op.tenant.padEnd(12)} ` : ""}${op.status.padEnd(24)} ${op.rows.total ?? "?"} rows  ${op.name ?? ""}\n`,
              );
          return;
        }
        const view = await client.get(id);
        process.stdout.write(
          opts.json ? `${JSON.stringify(view, null, 2)}\n` : `${summarize(view)}\n`,
        );
        // As `submit --wait` ends: 0 succeeded, 2 with failures, 1 failed or cancelled; an
        // operation still live is 75 (try again later).
        process.exitCode = TERMINAL_STATUSES.has(view.status)
          ? exitCodeFor(view.status)
          : EXIT.notFinished;
      },
    );
}

/** `shardfleet download ID`: the output workbook. */
export function addDownloadCommand(program: Command): void {
  program
    .command("download")
    .description("download an operation's output workbook")
    .argument("<id>", "operation id")
    .option("-o, --output <file>", "where to write it (default: <id>-result.xlsx)")
    .option(...apiOption)
    .option(...tokenOption)
    .action(async (id: string, opts: { output?: string; api: string; token?: string }) => {
      const out = opts.output ?? `${id}-result.xlsx`;
      await apiClient(opts).download(id, () => createWriteStream(out));
      process.stdout.write(`${out}\n`);
    });
}

/** `shardfleet cost ID`: the cost report as a table, or its JSON, or a CSV/xlsx/SVG file. */
export function addCostCommand(program: Command): void {
  program
    .command("cost")
    .description("show what a finished operation cost, and what spot saved")
    .argument("<id>", "operation id")
    .option("--json", "print the raw JSON")
    .addOption(
      new Option(
        "--format <format>",
        "write the report as a file: csv, xlsx, or svg (a chart of cost by market over time) (default: none, print it as a table)",
      ).choices(["csv", "xlsx", "svg"]),
    )
    .option("-o, --output <file>", "where --format writes (default: <id>-cost.<format>)")
    .option(...apiOption)
    .option(...tokenOption)
    .action(
      async (
        id: string,
        opts: {
          json?: boolean;
          format?: "csv" | "xlsx" | "svg";
          output?: string;
          api: string;
          token?: string;
        },
      ) => {
        if (opts.format) {
          const out = opts.output ?? `${id}-cost.${opts.format}`;
          await apiClient(opts).downloadCost(id, opts.format, () => createWriteStream(out));
          process.stdout.write(`${out}\n`);
          return;
        }
        if (opts.output) throw new CliError("-o/--output needs --format csv|xlsx|svg", EXIT.usage);
        const report = await apiClient(opts).cost(id);
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
          return;
        }
        process.stdout.write(formatCostTable(report));
      },
    );
}

/** `shardfleet whoami`: the token's tenant, role and caps. */
export function addWhoamiCommand(program: Command): void {
  program
    .command("whoami")
    .description("show the tenant and role the API token belongs to, and the tenant's caps")
    .option("--json", "print the raw JSON")
    .option(...apiOption)
    .option(...tokenOption)
    .action(async (opts: { json?: boolean; api: string; token?: string }) => {
      const me = await apiClient(opts).whoami();
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(me, null, 2)}\n`);
        return;
      }
      const caps = [
        `operations ${me.caps.maxOperations ?? "no cap"}`,
        `instances ${me.caps.maxInstances ?? "fleet cap"}`,
        `hourly ${me.caps.maxHourlyUsd === undefined ? "fleet cap" : `$${me.caps.maxHourlyUsd}`}`,
      ];
      process.stdout.write(`tenant ${me.tenant} (${me.role}); caps: ${caps.join(", ")}\n`);
    });
}
