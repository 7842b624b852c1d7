/**
 * Follows an operation until it ends, with a progress bar (rows done, rows/s, ETA) on a
 * terminal and a line every few seconds otherwise (CI logs).
 */
import cliProgress from "cli-progress";
import { TERMINAL_STATUSES } from "../shared/schemas/operation.ts";
import { sourceLine, sourceNote } from "../shared/source-format.ts";
import type { ApiClient, OperationView } from "./api-client.ts";
import { CliError, EXIT } from "./cli-error.ts";

export interface WaitOptions {
  /** Poll interval. @default 500 */
  intervalMs?: number;
  /** Show progress on stderr. @default true */
  progress?: boolean;
  /**
   * How long to keep reconnecting while the API is unreachable, times out or answers 5xx/429
   * (a scheduler restart), before giving up with the last error. @default 300_000 (5 min)
   */
  reconnectForMs?: number;
  /** Where "reconnecting…" lines go. @default process.stderr */
  notices?: { write(line: string): unknown };
}

/** Backoff between reconnection attempts: 0.5 s doubling to 10 s. */
const RECONNECT_FIRST_MS = 500;
const RECONNECT_MAX_MS = 10_000;
export const DEFAULT_RECONNECT_MS = 300_000;

export async function waitForOperation(
  client: ApiClient,
  id: string,
  options: WaitOptions = {},
): Promise<OperationView> {
  const interval = options.intervalMs ?? 500;
  const bar =
    options.progress === false
      ? undefined
      : new cliProgress.SingleBar(
          {
            format: "{status} |{bar}| {value}/{total} rows | {rate} rows/s | ETA {etaText}{source}",
            stream: process.stderr,
            noTTYOutput: true,
            notTTYSchedule: 3000,
            etaBuffer: 20,
            hideCursor: true,
          },
          cliProgress.Presets.shades_classic,
        );
  const started = Date.now();
  const get = () => getThroughOutages(client, id, options);
  let view = await get();
  bar?.start(view.rows.total ?? 0, 0, {
    status: view.status,
    rate: "0",
    etaText: "…",
    source: barSource(view),
  });
  try {
    while (!TERMINAL_STATUSES.has(view.status as never)) {
      await sleep(interval);
      view = await get();
      const done = view.rows.done;
      const seconds = (Date.now() - started) / 1000;
      if (view.rows.total) bar?.setTotal(view.rows.total);
      const rate = done / Math.max(seconds, 0.001);
      bar?.update(done, {
        status: view.status,
        rate: rate.toFixed(0),
        etaText: etaOf(view, rate),
        source: barSource(view),
      });
    }
    bar?.update(view.rows.total ?? view.rows.done, {
      status: view.status,
      etaText: "0s",
      source: "",
    });
  } finally {
    bar?.stop();
  }
  return view;
}

/**
 * `GET /operations/:id`, retried with backoff through transient failures for up to
 * `reconnectForMs`, saying so once per outage; the operation's own outcome is never retried.
 */
async function getThroughOutages(
  client: ApiClient,
  id: string,
  options: WaitOptions,
): Promise<OperationView> {
  const limit = options.reconnectForMs ?? DEFAULT_RECONNECT_MS;
  const notices = options.notices ?? process.stderr;
  let since: number | undefined;
  let delay = RECONNECT_FIRST_MS;
  for (;;) {
    try {
      const view = await client.get(id);
      if (since !== undefined) notices.write("reconnected\n");
      return view;
    } catch (err) {
      if (!(err instanceof CliError) || !err.transient) throw err;
      since ??= Date.now();
      if (Date.now() - since >= limit) throw err;
      if (delay === RECONNECT_FIRST_MS) {
        notices.write(`reconnecting… (${err.message}; retrying for up to ${limit / 1000} s)\n`);
      }
      await sleep(delay);
      delay = Math.min(delay * 2, RECONNECT_MAX_MS);
    }
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The progress bar's source note (http-enrich: requests/s against the budget, concurrency, 429s). */
export function barSource(view: Pick<OperationView, "source">): string {
  const note = sourceNote(view.source ?? []);
  return note === "" ? "" : ` | ${note}`;
}

/** Our own ETA: cli-progress's is meaningless while the total is still unknown (splitting). */
function etaOf(view: OperationView, rate: number): string {
  if (!view.rows.total || rate <= 0) return "…";
  const s = Math.max(0, (view.rows.total - view.rows.done) / rate);
  return s >= 90 ? `${Math.round(s / 60)}m` : `${Math.round(s)}s`;
}

/** A short human summary of a finished (or running) operation. */
export function summarize(view: OperationView): string {
  const lines = [
    `operation ${view.id}: ${view.status}`,
    ...(view.tenant ? [`  tenant: ${view.tenant}`] : []),
    `  rows:   ${view.rows.total ?? "?"} total, ${view.rows.done} done, ${view.rows.failed} with errors`,
    `  shards: ${view.shards.total ?? "?"} total, ${view.shards.pending} pending, ${view.shards.running} running, ${view.shards.done} done, ${view.shards.failed} failed`,
  ];
  if (view.startedAt && view.finishedAt) {
    const s = (Date.parse(view.finishedAt) - Date.parse(view.startedAt)) / 1000;
    lines.push(`  time:   ${s.toFixed(1)} s from start to finish`);
  }
  if (view.error) lines.push(`  error:  ${view.error.code}: ${view.error.message}`);
  if (view.waiting) {
    lines.push(`  waiting for capacity since ${clock(view.waiting.since)}: ${view.waiting.reason}`);
  }
  const instances = view.instances ?? [];
  if (instances.length > 0) {
    const live = instances.filter((i) => i.state === "pending" || i.state === "running").length;
    lines.push(`  instances: ${instances.length} (${live} live)`);
    // The SPOT SIGNAL column only when EventBridge said something of one of them.
    const signals = instances.map(spotSignal);
    const withSignals = signals.some((s) => s !== "");
    lines.push(
      ...table([
        ["ID", "MARKET", "ROLE", "TYPE", "STATE", "SINCE", ...(withSignals ? ["SPOT SIGNAL"] : [])],
        ...instances.map((i, k) => [
          i.id,
          i.market,
          i.role ?? "",
          i.type,
          i.state,
          clock(i.since),
          ...(withSignals ? [signals[k]!] : []),
        ]),
      ]).map((l) => `    ${l}`),
    );
  }
  for (const o of view.source ?? []) lines.push(`  source ${sourceLine(o)}`);
  const events = view.events ?? [];
  if (events.length > 0) {
    const shown = events.slice(-SHOWN_EVENTS);
    lines.push(
      `  events${events.length > shown.length ? ` (last ${shown.length} of ${events.length})` : ""}:`,
    );
    const width = Math.max(...shown.map((e) => e.kind.length));
    for (const e of shown) lines.push(`    ${clock(e.at)}  ${e.kind.padEnd(width)}  ${e.message}`);
  }
  return lines.join("\n");
}

/** Fleet events `shardfleet status` shows (the API has them all). */
const SHOWN_EVENTS = 12;

/** HH:MM:SS (UTC) of an ISO timestamp: events of one operation rarely span days. */
function clock(iso: string): string {
  return iso.length >= 19 ? iso.slice(11, 19) : iso;
}

/** What EventBridge said of the instance, if anything: a warning outranks a recommendation. */
function spotSignal(i: { interruptionWarnedAt?: string; rebalanceRecommendedAt?: string }): string {
  if (i.interruptionWarnedAt) return `interruption warned ${clock(i.interruptionWarnedAt)}`;
  if (i.rebalanceRecommendedAt) return `rebalance recommended ${clock(i.rebalanceRecommendedAt)}`;
  return "";
}

/** Left-aligned columns, two spaces apart. */
function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  return rows.map((r) =>
    r
      .map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!)))
      .join("  ")
      .trimEnd(),
  );
}

/** The CLI exit code for an operation status: 0 succeeded, 2 with failures, 1 otherwise. */
export function exitCodeFor(status: string): number {
  if (status === "succeeded") return EXIT.ok;
  if (status === "succeeded-with-failures") return EXIT.succeededWithFailures;
  return EXIT.failed;
}
