/** `shardfleet token create`: the minting itself (./token.ts) is imported only when it runs. */
import type { Command } from "commander";
import { numberOption, wholeNumberOption } from "../options.ts";

/** `shardfleet token create --tenant NAME`: mint a tenant's API token. */
export function addTokenCommand(program: Command): void {
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
      "cap on the tenant's unfinished operations (default: none on the line, so SHARDFLEET_TENANT_MAX_OPERATIONS applies)",
      wholeNumberOption("--max-operations", 0),
    )
    .option(
      "--max-instances <n>",
      "cap on the tenant's live instances (default: none on the line, so SHARDFLEET_TENANT_MAX_INSTANCES or the fleet's cap applies)",
      wholeNumberOption("--max-instances", 0),
    )
    .option(
      "--max-hourly-usd <usd>",
      "cap on the tenant's hourly instance spend (default: none on the line, so SHARDFLEET_TENANT_MAX_HOURLY_USD or the fleet's cap applies)",
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
        const { mintToken } = await import("./token.ts");
        const { token: minted, line } = mintToken(opts);
        process.stdout.write(
          `token (shown once; give it to the tenant as SHARDFLEET_API_TOKEN):\n${minted}\n` +
            `line to store (SHARDFLEET_API_TOKENS_FILE or the SSM parameter):\n${line}\n`,
        );
      },
    );
}
