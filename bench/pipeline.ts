/**
 * bench/pipeline (`npm run bench`): in one run, side by side and as ratios,
 * - 100,000 and 1,000,000 rows with a no-op transform through the local stack (2 instances)
 *   versus one process that reads and writes the same workbook with exceljs streaming;
 * - the scheduler's CPU-seconds per million rows for the split and for the merge, and its
 *   peak RSS at each size, also less its RSS right before the submission (start-up RSS varies
 *   by tens of MB between stack starts, so that difference is the growth the rows cause);
 *   the split alone (bench/split) and the merge alone (bench/merge's
 *   `benchMerge`: this tree's merger stitching laid-out commits) each in a process of its own;
 * - http-enrich fetch efficiency (bench/fetch: 200 in flight against a 50 ms source).
 * Figures, not assertions.
 *
 * The stack runs its scheduler and instances from the compiled build (`npm run bench` builds
 * first; `--sources` runs them through tsx instead), and the clock starts once every instance
 * polls the work queue: the baseline's clock, too, starts after its modules have loaded. While
 * it runs, the bench reads the operation's manifest from S3 every 100 ms (one small GET) rather
 * than the API's view (a listing and several reads in the scheduler per poll): watching must
 * neither delay the figure nor load the two cores it measures. After each run it prints where
 * the seconds went (`timeline`), from the records the run left in S3.
 *
 * Usage: npm run bench -- [--quick] [--rows N[,N…]] [--workers N] [--shard-size N] [--sources]
 *   --quick skips the 1,000,000-row case. --shard-size applies to every size (default: 2,000
 *   at 100,000 rows, as in BENCHMARKS.md's history, 10,000 above).
 */
import { execFile } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { cpus, loadavg, tmpdir } from "node:os";
import path from "node:path";
import { parseArgs, promisify } from "node:util";
import { ApiClient } from "../src/cli/api-client.ts";
import { writeCustomersWorkbook } from "../src/demo/customers.ts";
import { LOCAL_CREDENTIALS, LOCAL_REGION, startLocalStack } from "../src/local/stack.ts";
import { loadManifest } from "../src/scheduler/operations.ts";
import { createAwsClients } from "../src/shared/aws.ts";
import { ObjectStore } from "../src/shared/object-store.ts";
import { TERMINAL_STATUSES } from "../src/shared/schemas/operation.ts";
import { measureFetch } from "./fetch/measure.ts";
import { benchMerge, type MergeFigures } from "./merge.ts";
import { statCpuMs, statusMb } from "./proc.ts";
import { measureSplit, type SplitFigures } from "./split/measure.ts";
import { formatTimeline, readTimeline, type Timeline } from "./timeline.ts";

const { values } = parseArgs({
  options: {
    rows: { type: "string" },
    quick: { type: "boolean", default: false },
    workers: { type: "string", default: "2" },
    "shard-size": { type: "string" },
    "fetch-rows": { type: "string", default: "20000" },
    sources: { type: "boolean", default: false },
  },
});
const sizes = values.rows
  ? values.rows.split(",").map(Number)
  : values.quick
    ? [100_000]
    : [100_000, 1_000_000];
const workers = Number(values.workers);
const shardSizeFor = (rows: number) =>
  values["shard-size"] ? Number(values["shard-size"]) : rows <= 100_000 ? 2_000 : 10_000;

/** CPU time (user + system, all threads) of a live process in ms, from /proc (Linux). */
async function cpuMs(pid: number | undefined): Promise<number | undefined> {
  if (!pid) return undefined;
  try {
    return statCpuMs(await readFile(`/proc/${pid}/stat`, "utf-8"));
  } catch {
    return undefined;
  }
}
/**
 * How often the bench reads the manifest while it waits: 50 ms on average to see the end, and
 * about 1 % of a core (the GET here and in the S3 server, both in this process).
 */
const WATCH_MS = 100;

/** A live process's peak (VmHWM) or current (VmRSS) resident memory in MB, from /proc (Linux). */
async function rssMb(
  pid: number | undefined,
  field: "VmHWM" | "VmRSS",
): Promise<number | undefined> {
  if (!pid) return undefined;
  try {
    return statusMb(await readFile(`/proc/${pid}/status`, "utf-8"), field);
  } catch {
    return undefined;
  }
}

/**
 * The scheduler's resident memory once start-up has settled: read every 200 ms until two reads
 * agree within 1 MB (or 3 s pass). Its RSS before any submission differs by 20-35 MB from one
 * stack start to the next, so "peak − this" is the growth the rows cause.
 */
async function settledRssMb(pid: number | undefined): Promise<number | undefined> {
  let last = await rssMb(pid, "VmRSS");
  for (let k = 0; k < 15 && last !== undefined; k++) {
    await new Promise((r) => setTimeout(r, 200));
    const now = await rssMb(pid, "VmRSS");
    if (now === undefined || Math.abs(now - last) < 1) return now;
    last = now;
  }
  return last;
}

interface PipelineFigures {
  rows: number;
  shardSize: number;
  xlsxMb: number;
  baseline: { ms: number; peakRssMb: number };
  stackMs: number;
  phases: Array<[string, number]>;
  cpu: Array<[string, number | undefined]>;
  peaks: Array<[string, number | undefined]>;
  /** The scheduler's RSS right before the submission, start-up settled, and its peak so far. */
  schedulerRssBeforeMb: number | undefined;
  schedulerPeakBeforeMb: number | undefined;
  /** Scheduler CPU ms from the 202 until the shards are queued (split), and for the merge. */
  splitCpuMs: number | undefined;
  mergeCpuMs: number | undefined;
  /** Where the seconds went, from the run's records. */
  timeline: Timeline;
}

async function runPipeline(dir: string, rows: number, shardSize: number): Promise<PipelineFigures> {
  const input = path.join(dir, `input-${rows}.xlsx`);
  process.stderr.write(`generating ${rows} rows… `);
  await writeCustomersWorkbook(input, rows);
  const xlsxMb = (await stat(input)).size / 1e6;
  process.stderr.write(`${xlsxMb.toFixed(1)} MB; single process… `);

  const tsx = import.meta.resolve("tsx");
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [
      "--import",
      tsx,
      path.join(import.meta.dirname, "baseline-copy.ts"),
      input,
      path.join(dir, "baseline.xlsx"),
    ],
    { maxBuffer: 1 << 20 },
  );
  const baseline = JSON.parse(stdout) as { ms: number; rows: number; peakRssMb: number };
  process.stderr.write("local stack…\n");

  const stack = await startLocalStack({
    workers,
    logDir: path.join(dir, `logs-${rows}`),
    logLevel: "warn",
    settings: { SHARDFLEET_POLL_WAIT_S: "1" },
    compiled: !values.sources,
  });
  const clients = createAwsClients({
    endpoint: stack.endpoint,
    region: LOCAL_REGION,
    credentials: LOCAL_CREDENTIALS,
  });
  const store = new ObjectStore({ s3: clients.s3 }, { bucket: stack.resources.bucket });
  try {
    await stack.instancesUp();
    const client = new ApiClient(stack.apiUrl);
    // CPU spent between submit and download, per process (every thread): under contention from
    // other work on the machine this moves far less than wall time.
    const scheduler = stack.scheduler?.child.pid;
    const components = [
      ["scheduler", scheduler] as const,
      ...stack.instances.map((i) => [i.name, i.process.child.pid] as const),
    ];
    const schedulerRssBeforeMb = await settledRssMb(scheduler);
    const schedulerPeakBeforeMb = await rssMb(scheduler, "VmHWM");
    const cpuBefore = await Promise.all(components.map(([, pid]) => cpuMs(pid)));
    const selfBefore = process.cpuUsage();
    const started = performance.now();
    const { id } = await client.submit(input, {
      task: { name: "transform", options: { module: "noop" } },
      shardSize,
    });
    const accepted = performance.now();
    // The scheduler's CPU at each status change, seen by reading the manifest every WATCH_MS.
    const atStatus = new Map<string, number | undefined>([["accepted", await cpuMs(scheduler)]]);
    const seenAt = new Map<string, number>();
    let manifest = await loadManifest(store, id);
    for (;;) {
      if (manifest && !atStatus.has(manifest.status)) {
        seenAt.set(manifest.status, Date.now());
        atStatus.set(manifest.status, await cpuMs(scheduler));
      }
      if (manifest && TERMINAL_STATUSES.has(manifest.status)) break;
      await new Promise((r) => setTimeout(r, WATCH_MS));
      manifest = await loadManifest(store, id);
    }
    const view = manifest;
    if (view.status !== "succeeded") throw new Error(`operation ended ${view.status}`);
    const finished = performance.now();
    const ended = await cpuMs(scheduler);
    await client.download(id, () => createWriteStream(path.join(dir, "result.xlsx")));
    const stackMs = performance.now() - started;
    const self = process.cpuUsage(selfBefore);
    const cpuAfter = await Promise.all(components.map(([, pid]) => cpuMs(pid)));
    const cpu: Array<[string, number | undefined]> = components.map(([name], k) => {
      const [before, after] = [cpuBefore[k], cpuAfter[k]];
      return [name, before === undefined || after === undefined ? undefined : after - before];
    });
    cpu.push(["bench + S3/SQS server", (self.user + self.system) / 1000]);
    const at = (iso: string | null | undefined) => (iso ? Date.parse(iso) : Number.NaN);
    const timeline = await readTimeline(store, view, {
      mergingAt: seenAt.get("merging"),
      endAt: Date.now() - (performance.now() - finished),
    });
    const phases: Array<[string, number]> = [
      ["upload + header check (until 202)", accepted - started],
      ["queued + split (202 → running)", at(view.startedAt) - at(view.createdAt)],
      ["shards run + merge (running → done)", at(view.finishedAt) - at(view.startedAt)],
      ["download", performance.now() - finished],
    ];
    const diff = (a: number | undefined, b: number | undefined) =>
      a === undefined || b === undefined ? undefined : b - a;
    const peaks: Array<[string, number | undefined]> = [
      ...(await Promise.all(
        components.map(
          async ([name, pid]) => [name, await rssMb(pid, "VmHWM")] as [string, number | undefined],
        ),
      )),
      ["bench + S3/SQS server", process.resourceUsage().maxRSS / 1024],
    ];
    return {
      rows,
      shardSize,
      xlsxMb,
      baseline,
      stackMs,
      phases,
      cpu,
      peaks,
      schedulerRssBeforeMb,
      schedulerPeakBeforeMb,
      splitCpuMs: diff(
        atStatus.get("accepted"),
        atStatus.get("running") ?? atStatus.get("merging"),
      ),
      mergeCpuMs: diff(atStatus.get("merging"), ended),
      timeline,
    };
  } finally {
    clients.destroy();
    await stack.close();
  }
}

const fmt = (n: number | undefined, digits = 0) => (n === undefined ? "n/a" : n.toFixed(digits));
const load = () =>
  loadavg()
    .map((l) => l.toFixed(1))
    .join(" ");

const dir = await mkdtemp(path.join(tmpdir(), "shardfleet-bench-"));
try {
  const loadBefore = load();
  process.stderr.write(`fetch efficiency (${values["fetch-rows"]} rows)…\n`);
  const fetch = await measureFetch({
    rows: Number(values["fetch-rows"]),
    concurrency: 200,
    latencyMs: 50,
  });
  const runs: PipelineFigures[] = [];
  const alone: SplitFigures[] = [];
  const merges: MergeFigures[] = [];
  for (const rows of sizes) {
    alone.push(await measureSplit(rows, shardSizeFor(rows)));
    process.stderr.write(`merge alone (${rows} rows)…\n`);
    merges.push((await benchMerge({ rows, shardSize: shardSizeFor(rows) })).after);
    runs.push(await runPipeline(dir, rows, shardSizeFor(rows)));
  }
  const loadAfter = load();

  const col = (s: string) => s.padStart(16);
  const row = (name: string, cells: string[]) => `  ${name.padEnd(44)}${cells.map(col).join("")}`;
  const perMillion = (ms: number | undefined, rows: number) =>
    ms === undefined ? undefined : (ms / 1000) * (1e6 / rows);
  const lines = [
    "",
    `bench/pipeline — no-op transform, ${workers} local instances (${values.sources ? "sources through tsx" : "compiled"}, clock from all polling); load average ${loadBefore} before, ${loadAfter} after (${cpus().length} cores)`,
    row(
      "",
      runs.map((r) => `${r.rows.toLocaleString("en-US")} rows`),
    ),
    row(
      "shard size",
      runs.map((r) => r.shardSize.toLocaleString("en-US")),
    ),
    row(
      "input xlsx",
      runs.map((r) => `${fmt(r.xlsxMb, 1)} MB`),
    ),
    row(
      "single process (exceljs stream copy)",
      runs.map((r) => `${fmt(r.baseline.ms / 1000, 2)} s`),
    ),
    row(
      "  its peak RSS",
      runs.map((r) => `${fmt(r.baseline.peakRssMb)} MB`),
    ),
    row(
      "local stack (submit → result downloaded)",
      runs.map((r) => `${fmt(r.stackMs / 1000, 2)} s`),
    ),
    ...(runs[0]?.phases ?? []).map(([name], k) =>
      row(
        `  ${name}`,
        runs.map((r) => `${fmt((r.phases[k]?.[1] ?? Number.NaN) / 1000, 2)} s`),
      ),
    ),
    row(
      "ratio stack / single process",
      runs.map((r) => (r.stackMs / r.baseline.ms).toFixed(2)),
    ),
    row(
      "  goal",
      runs.map((r) => (r.rows >= 1_000_000 ? "≤ 0.25" : "≤ 1.5")),
    ),
    row(
      "scheduler CPU-s per 1M rows, split",
      runs.map((r) => fmt(perMillion(r.splitCpuMs, r.rows), 2)),
    ),
    row(
      "scheduler CPU-s per 1M rows, merge",
      runs.map((r) => fmt(perMillion(r.mergeCpuMs, r.rows), 2)),
    ),
    row(
      "  split alone, own process (bench/split)",
      alone.map((a) => fmt((a.cpuMs / 1000) * (1e6 / a.rows), 2)),
    ),
    row(
      "  split alone: wall, peak RSS",
      alone.map((a) => `${fmt(a.wallMs / 1000, 1)} s ${fmt(a.peakRssMb)} MB`),
    ),
    row(
      "  merge alone, own process (bench/merge)",
      merges.map((m) => fmt(m.cpuSPerMillionRows, 2)),
    ),
    row(
      "  merge alone: wall, peak RSS",
      merges.map((m) => `${fmt(m.wallS, 1)} s ${fmt(m.peakRssMb)} MB`),
    ),
    row(
      "  split alone + merge alone (goal ≤ 5)",
      alone.map((a, k) => {
        const m = merges[k];
        return fmt(m ? (a.cpuMs / 1000) * (1e6 / a.rows) + m.cpuSPerMillionRows : undefined, 2);
      }),
    ),
    row(
      "  split + merge (goal ≤ 5)",
      runs.map((r) =>
        fmt(
          r.splitCpuMs === undefined || r.mergeCpuMs === undefined
            ? undefined
            : perMillion(r.splitCpuMs + r.mergeCpuMs, r.rows),
          2,
        ),
      ),
    ),
    ...(runs[0]?.cpu ?? []).map(([name], k) =>
      row(
        `CPU ${name}`,
        runs.map((r) => `${fmt((r.cpu[k]?.[1] ?? Number.NaN) / 1000, 2)} s`),
      ),
    ),
    ...(runs[0]?.peaks ?? []).map(([name], k) =>
      row(
        `peak RSS ${name}`,
        runs.map((r) => `${fmt(r.peaks[k]?.[1])} MB`),
      ),
    ),
  ];
  // The scheduler's peak minus its RSS right before the submission: the growth the rows cause,
  // without the start-up RSS that differs from one stack start to the next.
  const grownMb = (r: PipelineFigures | undefined) => {
    const [peak, before] = [r?.peaks[0]?.[1], r?.schedulerRssBeforeMb];
    return peak === undefined || before === undefined ? undefined : peak - before;
  };
  lines.push(
    row(
      "scheduler RSS before submission",
      runs.map((r) => `${fmt(r.schedulerRssBeforeMb)} MB`),
    ),
    // If the final peak equals this, start-up set it and "peak − before" is not the rows' growth.
    row(
      "  its peak RSS so far (start-up)",
      runs.map((r) => `${fmt(r.schedulerPeakBeforeMb)} MB`),
    ),
    row(
      "scheduler peak RSS − before submission",
      runs.map((r) => `${fmt(grownMb(r))} MB`),
    ),
  );
  const first = runs[0]?.peaks[0]?.[1];
  const last = runs.at(-1)?.peaks[0]?.[1];
  if (runs.length > 1 && first !== undefined && last !== undefined) {
    lines.push(
      `  scheduler peak RSS growth ${runs[0]?.rows.toLocaleString("en-US")} → ${runs.at(-1)?.rows.toLocaleString("en-US")} rows: ${fmt(last - first)} MB (goal ≤ 50)`,
    );
    const [grownFirst, grownLast] = [grownMb(runs[0]), grownMb(runs.at(-1))];
    lines.push(
      `    peak − RSS before submission: ${fmt(grownFirst)} MB at ${runs[0]?.rows.toLocaleString("en-US")}, ${fmt(grownLast)} MB at ${runs.at(-1)?.rows.toLocaleString("en-US")}, growth ${fmt(grownFirst === undefined || grownLast === undefined ? undefined : grownLast - grownFirst)} MB (start-up RSS ${fmt(runs[0]?.schedulerRssBeforeMb)} → ${fmt(runs.at(-1)?.schedulerRssBeforeMb)} MB, left out)`,
    );
  }
  for (const r of runs) lines.push(...formatTimeline(r.rows, r.timeline));
  lines.push(
    `  fetch efficiency (http-enrich, ${fetch.concurrency} in flight, ${fetch.latencyMs} ms source, ${fetch.rows.toLocaleString("en-US")} rows): ${fetch.efficiency.toFixed(3)} (goal ≥ 0.95) — ${fmt(fetch.seconds, 2)} s, runner ${fmt(fetch.cpuSeconds, 2)} CPU-s`,
    `    same minute: a bare undici loop ${fetch.floorEfficiency.toFixed(3)} (${fmt(fetch.floorCpuSeconds, 2)} CPU-s); the source ${fmt(fetch.sourceLateMs, 1)} ms late on average; the runner's first ${fetch.warmupRows.toLocaleString("en-US")} rows (cold process, warm-up) ${fetch.coldEfficiency.toFixed(3)}; load ${fetch.load.map((l) => l.toFixed(1)).join(" → ")}`,
    "",
  );
  process.stdout.write(lines.join("\n"));
} finally {
  await rm(dir, { recursive: true, force: true });
}
