/**
 * `shardfleet list` (operations, filtered and paged) and `shardfleet watch ID` (a progress bar
 * fed by the operation's server-sent events, resuming with Last-Event-ID when the connection
 * drops).
 */
import cliProgress from "cli-progress";
import { type Command, Option } from "commander";
import { EventSource } from "eventsource";
import {
  fleetStreamEventSchema,
  progressEventSchema,
  sourceEventSchema,
  statusEventSchema,
} from "../../shared/contracts/events.ts";
import { MAX_LIST_LIMIT, type OperationView } from "../../shared/contracts/operations.ts";
import { operationStatuses, TERMINAL_STATUSES } from "../../shared/schemas/operation.ts";
import { apiClient, apiOption, tokenOption } from "../api-options.ts";
import { CliError, EXIT } from "../cli-error.ts";
import { wholeNumberOption } from "../options.ts";
import { barSource, exitCodeFor } from "../wait.ts";

function listLine(op: OperationView): string {
  return `${op.id}  ${op.tenant.padEnd(12)} ${op.status.padEnd(24)} ${op.rows.total ?? "?"} rows  ${op.name ?? ""}`;
}

/** `shardfleet list [--status S] [--limit N] [--cursor C] [--json]`. */
export function addListCommand(program: Command): void {
  program
    .command("list")
    .description("list operations, newest first")
    .addOption(
      new Option("--status <status>", "only this status (default: every status)").choices(
        operationStatuses,
      ),
    )
    .option(
      "--limit <n>",
      `at most this many (1-${MAX_LIST_LIMIT})`,
      wholeNumberOption("--limit", 1),
      20,
    )
    .option(
      "--cursor <cursor>",
      "the next page: the cursor a previous list printed (default: the first page)",
    )
    .option("--json", "print the raw JSON page ({operations, nextCursor})")
    .option(...apiOption)
    .option(...tokenOption)
    .action(
      async (opts: {
        status?: string;
        limit: number;
        cursor?: string;
        json?: boolean;
        api: string;
        token?: string;
      }) => {
        const page = await apiClient(opts).list({
          limit: opts.limit,
          status: opts.status,
          cursor: opts.cursor,
        });
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(page, null, 2)}\n`);
          return;
        }
        if (page.operations.length === 0) process.stdout.write("no operations\n");
        for (const op of page.operations) process.stdout.write(`${listLine(op)}\n`);
        if (page.nextCursor) process.stderr.write(`more: --cursor ${page.nextCursor}\n`);
      },
    );
}

/** `shardfleet watch ID`: follow a running operation until it ends; exits like `submit --wait`. */
export function addWatchCommand(program: Command): void {
  program
    .command("watch")
    .description(
      "follow an operation with a progress bar (its live events stream) until it ends; exits 0 succeeded, 2 with failures, 1 failed or cancelled",
    )
    .argument("<id>", "operation id")
    .option("--json", "print each event as a JSON line instead of the bar")
    .option(...apiOption)
    .option(...tokenOption)
    .action(async (id: string, opts: { json?: boolean; api: string; token?: string }) => {
      const client = apiClient(opts);
      // 404 / 401 / unreachable as one line, before the stream opens.
      const view = await client.get(id);
      const status = await watch(client.events(id), view, opts.json ?? false);
      process.exitCode = exitCodeFor(status);
    });
}

/** Follows the events stream until the final status; returns it. */
function watch(
  stream: { url: string; headers: Record<string, string> },
  view: OperationView,
  json: boolean,
): Promise<string> {
  const bar = json
    ? undefined
    : new cliProgress.SingleBar(
        {
          format: "{status} |{bar}| {value}/{total} rows{source} | {note}",
          stream: process.stderr,
          noTTYOutput: true,
          notTTYSchedule: 3000,
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      );
  bar?.start(view.rows.total ?? 0, view.rows.done, {
    status: view.status,
    note: "",
    source: barSource(view),
  });
  let status = view.status as string;
  return new Promise((resolve, reject) => {
    // EventSource reconnects by itself after a drop, sending Last-Event-ID: nothing is missed.
    const es = new EventSource(stream.url, {
      fetch: (input, init) =>
        fetch(input, { ...init, headers: { ...init?.headers, ...stream.headers } }),
    });
    const finish = (err?: Error) => {
      es.close();
      bar?.stop();
      if (err) reject(err);
      else resolve(status);
    };
    const on = (type: string, handle: (data: unknown) => void) =>
      es.addEventListener(type, (e) => {
        const data: unknown = JSON.parse(e.data);
        if (json)
          process.stdout.write(`${JSON.stringify({ event: type, id: e.lastEventId, data })}\n`);
        handle(data);
      });
    on("progress", (data) => {
      const p = progressEventSchema.parse(data);
      if (p.rows.total) bar?.setTotal(p.rows.total);
      bar?.update(p.rows.done, { status });
    });
    on("source", (data) => {
      bar?.update({ source: barSource({ source: sourceEventSchema.parse(data).origins }) });
    });
    on("fleet", (data) => {
      const f = fleetStreamEventSchema.parse(data);
      bar?.update({ note: f.message });
    });
    on("status", (data) => {
      const s = statusEventSchema.parse(data);
      status = s.status;
      bar?.update({ status, note: s.error?.message ?? s.waiting?.reason ?? "" });
      if (TERMINAL_STATUSES.has(s.status)) {
        // The cost event, when there is one, follows at once; the stream ends after it.
        setTimeout(() => finish(), json ? 200 : 0);
      }
    });
    es.onerror = (e) => {
      if (e.code === 401 || e.code === 404) {
        finish(
          new CliError(
            `the events stream was refused (${e.code})`,
            e.code === 401 ? EXIT.unauthorized : EXIT.failed,
          ),
        );
      }
    };
  });
}
