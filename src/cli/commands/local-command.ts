/** `shardfleet local`: its options; the stack itself (./local.ts) is imported only when it runs. */
import path from "node:path";
import { type Command, InvalidArgumentError, Option } from "commander";
import { CliError, EXIT } from "../cli-error.ts";
import { wholeNumberOption } from "../options.ts";

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

/** `shardfleet local`: the whole system on this machine. */
export function addLocalCommand(program: Command): void {
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
    .option(
      "--data-dir <dir>",
      "where the stack keeps its objects across restarts (operations, results, cost reports)",
      path.join(".shardfleet", "data"),
    )
    .addOption(
      new Option(
        "--ephemeral",
        "keep nothing: objects live in memory and go with the stack",
      ).conflicts("dataDir"),
    )
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
      "with --fleet: seconds after start without spot capacity, e.g. 0-60 (default: none, spot is always there)",
      spotOutage,
    )
    .action(
      async (opts: {
        awsPort: number;
        apiPort: number;
        workers: number;
        logDir: string;
        dataDir: string;
        ephemeral?: boolean;
        fleet?: boolean;
        maxInstances: number;
        spotOutageS?: { fromMs: number; toMs: number };
      }) => {
        if (!opts.fleet && opts.spotOutageS) {
          throw new CliError("--spot-outage-s needs --fleet", EXIT.usage);
        }
        const { runLocal } = await import("./local.ts");
        await runLocal(opts);
      },
    );
}
