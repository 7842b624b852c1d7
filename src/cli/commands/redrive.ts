/**
 * The redrive area's operator commands: `rm` (delete a finished operation) and `retry` (run its
 * failed rows again). Each calls the scheduler API through ApiClient.
 */
import type { Command } from "commander";
import { type RetryRequest, retryRequestSchema } from "../../shared/contracts/operations.ts";
import { apiClient, apiOption, tokenOption } from "../api-options.ts";
import { CliError, EXIT } from "../cli-error.ts";
import { exitCodeFor, summarize, waitForOperation } from "../wait.ts";

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

/**
 * `--set key=value` pairs as the retry request's options: a value that reads as JSON (a number,
 * true/false, null, an object) is that value, anything else is text. Checked with the route's
 * own contract; the task's options are checked by the API (400 naming the field).
 */
export function retryRequestOf(sets: readonly string[]): RetryRequest {
  const options: Record<string, unknown> = {};
  for (const set of sets) {
    const at = set.indexOf("=");
    const key = at > 0 ? set.slice(0, at).trim() : "";
    if (key === "") {
      throw new CliError(`--set ${JSON.stringify(set)}: expected key=value`, EXIT.usage);
    }
    const text = set.slice(at + 1);
    let value: unknown = text;
    try {
      value = JSON.parse(text);
    } catch {
      // Plain text.
    }
    options[key] = value;
  }
  const parsed = retryRequestSchema.safeParse(sets.length === 0 ? {} : { options });
  if (!parsed.success) {
    throw new CliError(`--set: ${parsed.error.issues[0]?.message ?? "invalid"}`, EXIT.usage);
  }
  return parsed.data;
}

/** `shardfleet retry ID [--set key=value ...] [--wait]`: runs its failed rows again. */
export function addRetryCommand(program: Command): void {
  program
    .command("retry")
    .description(
      "run the rows of a finished operation that ended with an error again (succeeded-with-failures or failed); finished rows are kept",
    )
    .argument("<id>", "operation id")
    .option(
      "--set <key=value>",
      "change a task option for the retry (repeatable; JSON values, e.g. --set retries=6 --set timeoutMs=30000; key=null restores its default) (default: none, the options of the last run)",
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option("--wait", "follow the retry with a progress bar until the operation ends")
    .option(...apiOption)
    .option(...tokenOption)
    .action(
      async (id: string, opts: { set?: string[]; wait?: boolean; api: string; token?: string }) => {
        const request = retryRequestOf(opts.set ?? []);
        const client = apiClient(opts);
        const view = await client.retry(id, request);
        const retry = view.retries?.at(-1);
        process.stdout.write(`${view.id} ${view.status} retry ${retry?.number ?? "?"}\n`);
        if (opts.wait) {
          const ended = await waitForOperation(client, id);
          process.stdout.write(`${summarize(ended)}\n`);
          process.exitCode = exitCodeFor(ended.status);
        }
      },
    );
}
