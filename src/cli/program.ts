/**
 * The `shardfleet` command line. Each failure ends with one line on stderr and a documented
 * exit code; `--help` works on every command.
 */
import { createWriteStream } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { Command, CommanderError, InvalidArgumentError } from "commander";
import { ShardfleetError } from "../shared/errors.ts";
import { VERSION } from "../shared/version.ts";
import { ApiClient, DEFAULT_API_URL } from "./api-client.ts";
import { CliError, EXIT } from "./cli-error.ts";
import { addSimulateCommand } from "./commands/simulate.ts";
import { numberOption, wholeNumberOption } from "./options.ts";
import { exitCodeFor, summarize, waitForOperation } from "./wait.ts";

/** "A-B" seconds → a window in ms. */
function spotOutage(value: string): { fromMs: number; toMs: number } {
  const m = /^(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)$/.exec(value.trim());
  const from = Number(m?.[1]);
  const to = Number(m?.[2]);
  if (!m || !(to > from)) {
    throw new InvalidArgumentError(
      "--spot-outage-s must be FROM-TO in seconds with FROM < TO, e.g. 0-60",
    );
  }
  return { fromMs: from * 1000, toMs: to * 1000 };
}

const apiOption = [
  "--api <url>",
  "scheduler API URL (env SHARDFLEET_API_URL)",
  process.env.SHARDFLEET_API_URL || DEFAULT_API_URL,
] as const;

const tokenOption = [
  "--token <token>",
  "API bearer token, for an API that requires one (default: env SHARDFLEET_API_TOKEN, which keeps it out of ps and shell history)",
] as const;

/** The API client for a command's --api and --token (else env SHARDFLEET_API_TOKEN). */
function apiClient(opts: { api: string; token?: string }): ApiClient {
  const token = opts.token ?? (process.env.SHARDFLEET_API_TOKEN || undefined);
  if (token === undefined) return new ApiClient(opts.api);
  // A header value cannot hold a line break; two lines would be a rotation file pasted whole.
  if (!/^[\x21-\x7e]+$/.test(token)) {
    throw new CliError(
      "the API token (--token or SHARDFLEET_API_TOKEN) must be one token: no spaces or line breaks",
      EXIT.usage,
    );
  }
  return new ApiClient(opts.api, { token });
}

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

export function buildProgram(): Command {
  const program = new Command("shardfleet")
    .description("Per-row batch work on cheap cloud capacity: submit a workbook, get one back.")
    .version(VERSION, "-V, --version", "print the shardfleet version")
    .addHelpText(
      "after",
      "\nAPI commands read SHARDFLEET_API_URL and SHARDFLEET_API_TOKEN (the bearer token, when the API requires one).\nExit codes: 0 ok/succeeded, 1 failed, 2 succeeded with failures, 64 usage, 69 API unreachable, 77 API token refused, 78 bad config.",
    )
    .showHelpAfterError("(run with --help for usage)")
    // Before any subcommand is added, so they inherit it: errors reach main() as exceptions.
    .exitOverride();

  program
    .command("local")
    .description(
      "run the whole system on this machine: SQS/S3 server, scheduler API and worker instances",
    )
    .option(
      "--aws-port <port>",
      "SQS/S3 server port (0 = any free port)",
      wholeNumberOption("--aws-port", 0),
      4566,
    )
    .option("--api-port <port>", "scheduler API port", wholeNumberOption("--api-port", 0), 8080)
    .option(
      "--workers <n>",
      "worker instances to start (0 = servers only)",
      wholeNumberOption("--workers", 0),
      2,
    )
    .option("--log-dir <dir>", "where component logs go", path.join(".shardfleet", "logs"))
    .addHelpText(
      "after",
      "\nThe scheduler and workers get this shell's SHARDFLEET_* settings (limits, tokens,\nSHARDFLEET_EGRESS_ALLOW, ...), checked before anything starts (exit 78 naming a bad one),\nexcept those the stack sets itself: bucket, queue URLs, API host and port, instance id and\nmarket, capacity. Nothing but public addresses is reachable by tasks unless\nSHARDFLEET_EGRESS_ALLOW names it.",
    )
    .option(
      "--fleet",
      "no fixed workers: the scheduler's fleet manager launches and terminates instances (spot first, on-demand fallback)",
    )
    .option(
      "--max-instances <n>",
      "with --fleet: the most instances at once",
      wholeNumberOption("--max-instances", 0),
      20,
    )
    .option(
      "--spot-outage-s <from-to>",
      "with --fleet: seconds after start without spot capacity, e.g. 0-60",
      spotOutage,
    )
    .action(
      async (opts: {
        awsPort: number;
        apiPort: number;
        workers: number;
        logDir: string;
        fleet?: boolean;
        maxInstances: number;
        spotOutageS?: { fromMs: number; toMs: number };
      }) => {
        if (!opts.fleet && opts.spotOutageS) {
          throw new CliError("--spot-outage-s needs --fleet", EXIT.usage);
        }
        const { runLocal } = await import("./commands/local.ts");
        await runLocal(opts);
      },
    );

  program
    .command("submit")
    .description("submit an operation: a workbook (xlsx or csv) and a JSON spec")
    .argument("<file>", "input workbook (.xlsx or .csv)")
    .requiredOption("--spec <file>", "operation spec (JSON): task, options, shard size")
    .option(
      "--shard-size <n>",
      "rows per shard (overrides the spec)",
      wholeNumberOption("--shard-size", 0),
    )
    .option(
      "--wait",
      "follow the operation with a progress bar until it ends; rides out API outages (unreachable, 5xx) for up to 5 minutes",
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
      },
    );

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

  program
    .command("cost")
    .description("show what a finished operation cost, and what spot saved")
    .argument("<id>", "operation id")
    .option("--json", "print the raw JSON")
    .option(...apiOption)
    .option(...tokenOption)
    .action(async (id: string, opts: { json?: boolean; api: string; token?: string }) => {
      const raw = await apiClient(opts).cost(id);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(raw, null, 2)}\n`);
        return;
      }
      const { costReportSchema } = await import("../shared/schemas/cost.ts");
      const { formatCostTable } = await import("../scheduler/cost/format.ts");
      process.stdout.write(formatCostTable(costReportSchema.parse(raw)));
    });

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

  const token = program.command("token").description("API tokens of tenants");
  token
    .command("create")
    .description(
      "mint a token: prints it once (give it to the tenant) and the line to store in SHARDFLEET_API_TOKENS_FILE or the SSM parameter, which holds only its SHA-256",
    )
    .requiredOption("--tenant <name>", "the tenant the token belongs to")
    .option("--role <role>", "member (its tenant's operations) or admin (every tenant's)", "member")
    .option(
      "--max-operations <n>",
      "cap on the tenant's unfinished operations",
      wholeNumberOption("--max-operations", 0),
    )
    .option(
      "--max-instances <n>",
      "cap on the tenant's live instances",
      wholeNumberOption("--max-instances", 0),
    )
    .option(
      "--max-hourly-usd <usd>",
      "cap on the tenant's hourly instance spend",
      numberOption("--max-hourly-usd", (n) => n >= 0, "a number ≥ 0"),
    )
    .action(
      async (opts: {
        tenant: string;
        role: string;
        maxOperations?: number;
        maxInstances?: number;
        maxHourlyUsd?: number;
      }) => {
        const { mintToken } = await import("./commands/token.ts");
        const { token: minted, line } = mintToken(opts);
        process.stdout.write(
          `token (shown once; give it to the tenant as SHARDFLEET_API_TOKEN):\n${minted}\n` +
            `line to store (SHARDFLEET_API_TOKENS_FILE or the SSM parameter):\n${line}\n`,
        );
      },
    );

  program
    .command("demo")
    .description(
      "run a real operation end to end on the local stack (customers × a local tax registry)",
    )
    .option(
      "--rows <n>",
      "customers in the generated workbook",
      wholeNumberOption("--rows", 0),
      20_000,
    )
    .option("--workers <n>", "local instances", wholeNumberOption("--workers", 0), 3)
    .option("--out <dir>", "output folder", "out")
    .action(async (opts: { rows: number; workers: number; out: string }) => {
      const { runDemo } = await import("../demo/run-demo.ts");
      const result = await runDemo({ rows: opts.rows, workers: opts.workers, outDir: opts.out });
      process.exitCode = result.status === "failed" || result.status === "cancelled" ? 1 : 0;
    });

  addSimulateCommand(program);

  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
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
