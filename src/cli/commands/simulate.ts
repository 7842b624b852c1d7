/**
 * `shardfleet simulate`: the fleet simulator (src/sim/) from the command line — today's fleet
 * policy against the baselines in one seeded world, as a table or one JSON object. Registered
 * by program.ts; the simulator itself is imported only when the command runs.
 */
import type { Command } from "commander";
import { CliError, EXIT } from "../cli-error.ts";
import { numberOption, wholeNumberOption } from "../options.ts";

const whole = (flag: string) => wholeNumberOption(flag, 1);

interface SimulateOptions {
  shards: number;
  rowsPerShard: number;
  rowMs: number;
  maxInstances: number;
  shardsPerInstance: number;
  band: string;
  spotRatio: number;
  rateScale: number;
  noticeFraction: number;
  spotVcpuQuota: number;
  seed: number;
  json?: boolean;
}

export function addSimulateCommand(program: Command): void {
  program
    .command("simulate")
    .description(
      "simulate an operation on a fleet steered by the live fleet policy, against all-on-demand and other baselines (same seed)",
    )
    .option("--shards <n>", "shards in the operation", whole("--shards"), 10_000)
    .option("--rows-per-shard <n>", "rows per shard", whole("--rows-per-shard"), 200)
    .option(
      "--row-ms <ms>",
      "mean time of one row on one shard slot",
      numberOption("--row-ms", (n) => n > 0, "a number > 0"),
      600,
    )
    .option("--max-instances <n>", "most instances at once", whole("--max-instances"), 500)
    .option(
      "--shards-per-instance <n>",
      "shards one instance works at once",
      whole("--shards-per-instance"),
      2,
    )
    .option(
      "--band <band>",
      "Spot Instance Advisor interruption band: <5, 5-10, 10-15, 15-20, >20",
      "5-10",
    )
    .option(
      "--spot-ratio <r>",
      "spot price as a fraction of on-demand",
      numberOption("--spot-ratio", (n) => n > 0 && n <= 1, "in (0, 1]"),
      0.3,
    )
    .option(
      "--rate-scale <k>",
      "multiplies the band's monthly interruption rate (short runs; stated in the output)",
      numberOption("--rate-scale", (n) => n >= 0, "≥ 0"),
      100,
    )
    .option(
      "--notice-fraction <f>",
      "fraction of interruptions with the two-minute notice",
      numberOption("--notice-fraction", (n) => n >= 0 && n <= 1, "in [0, 1]"),
      0.8,
    )
    .option(
      "--spot-vcpu-quota <n>",
      "the account's spot vCPU quota, for the quotas report",
      whole("--spot-vcpu-quota"),
      5000,
    )
    .option(
      "--seed <n>",
      "random seed: the same seed, the same run",
      numberOption(
        "--seed",
        (n) => Number.isInteger(n) && n >= 0 && n < 2 ** 32,
        "a whole number in [0, 2^32)",
      ),
      1,
    )
    .option("--json", "print one JSON object instead of the table")
    .action(async (opts: SimulateOptions) => {
      const { bandNames } = await import("../../sim/params.ts");
      if (!(bandNames as string[]).includes(opts.band)) {
        throw new CliError(`--band must be one of ${bandNames.join(", ")}`, EXIT.usage);
      }
      const { compare } = await import("../../sim/compare.ts");
      const { comparisonJson, formatComparison } = await import("../../sim/format.ts");
      let result: ReturnType<typeof compare>;
      try {
        result = compare({
          shards: opts.shards,
          rowsPerShard: opts.rowsPerShard,
          rowMs: opts.rowMs,
          maxInstances: opts.maxInstances,
          shardsPerInstance: opts.shardsPerInstance,
          band: opts.band as "5-10",
          spotRatio: opts.spotRatio,
          rateScale: opts.rateScale,
          noticeFraction: opts.noticeFraction,
          spotVcpuQuota: opts.spotVcpuQuota,
          seed: opts.seed,
        });
      } catch (err) {
        if (err instanceof Error && err.message.startsWith("simulation parameter")) {
          throw new CliError(err.message, EXIT.usage);
        }
        throw err;
      }
      process.stdout.write(
        opts.json
          ? `${JSON.stringify(comparisonJson(result), null, 2)}\n`
          : formatComparison(result),
      );
    });
}
