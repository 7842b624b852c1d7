/**
 * bench/pipeline: a 100,000-row workbook with a no-op transform through the local stack
 * (2 instances) versus one process that reads and writes the same workbook with exceljs
 * streaming. Prints both wall times, the ratio, each process's CPU time and peak memory.
 * Figures, not assertions.
 *
 * Usage: npm run bench -- [--rows N] [--workers N] [--shard-size N]
 */
import { execFile } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs, promisify } from "node:util";
import { ApiClient } from "../src/cli/api-client.ts";
import { waitForOperation } from "../src/cli/wait.ts";
import { writeCustomersWorkbook } from "../src/demo/customers.ts";
import { startLocalStack } from "../src/local/stack.ts";

const { values } = parseArgs({
  options: {
    rows: { type: "string", default: "100000" },
    workers: { type: "string", default: "2" },
    "shard-size": { type: "string", default: "2000" },
  },
});
const rows = Number(values.rows);
const workers = Number(values.workers);
const shardSize = Number(values["shard-size"]);

/** CPU time (user + system, all threads) of a live process in ms, from /proc (Linux). */
async function cpuMs(pid: number | undefined): Promise<number | undefined> {
  if (!pid) return undefined;
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf-8");
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}
/** USER_HZ: 100 on every Linux the bench runs on. */
const CLOCK_TICKS = 100;

/** Peak resident memory of a live process, from /proc (Linux). */
async function peakRssMb(pid: number | undefined): Promise<number | undefined> {
  if (!pid) return undefined;
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf-8");
    const kb = /VmHWM:\s+(\d+) kB/.exec(status)?.[1];
    return kb ? Number(kb) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

const dir = await mkdtemp(path.join(tmpdir(), "shardfleet-bench-"));
const fmt = (n: number | undefined, digits = 0) => (n === undefined ? "n/a" : n.toFixed(digits));
try {
  const input = path.join(dir, "input.xlsx");
  process.stdout.write(`generating ${rows} rows… `);
  await writeCustomersWorkbook(input, rows);
  process.stdout.write(`${((await stat(input)).size / 1e6).toFixed(1)} MB\n`);

  const tsx = import.meta.resolve("tsx");
  const { stdout } = await promisify(execFile)(process.execPath, [
    "--import",
    tsx,
    path.join(import.meta.dirname, "baseline-copy.ts"),
    input,
    path.join(dir, "baseline.xlsx"),
  ]);
  const baseline = JSON.parse(stdout) as { ms: number; rows: number; peakRssMb: number };

  const stack = await startLocalStack({
    workers,
    logDir: path.join(dir, "logs"),
    logLevel: "warn",
    settings: { SHARDFLEET_POLL_WAIT_S: "1" },
  });
  let pipelineMs: number;
  let peaks: Array<[string, number | undefined]>;
  let phases: Array<[string, number]>;
  let cpu: Array<[string, number | undefined]>;
  try {
    const client = new ApiClient(stack.apiUrl);
    // CPU spent between submit and download, per process (every thread): under contention from
    // other work on the machine this moves far less than wall time.
    const components = [
      ["scheduler", stack.scheduler?.child.pid] as const,
      ...stack.instances.map((i) => [i.name, i.process.child.pid] as const),
    ];
    const cpuBefore = await Promise.all(components.map(([, pid]) => cpuMs(pid)));
    const selfBefore = process.cpuUsage();
    const started = performance.now();
    const { id } = await client.submit(input, {
      task: { name: "transform", options: { module: "noop" } },
      shardSize,
    });
    const accepted = performance.now();
    const view = await waitForOperation(client, id, { progress: false, intervalMs: 100 });
    if (view.status !== "succeeded") throw new Error(`operation ended ${view.status}`);
    const finished = performance.now();
    await client.download(id, () => createWriteStream(path.join(dir, "result.xlsx")));
    pipelineMs = performance.now() - started;
    const self = process.cpuUsage(selfBefore);
    const cpuAfter = await Promise.all(components.map(([, pid]) => cpuMs(pid)));
    cpu = components.map(([name], k) => {
      const [before, after] = [cpuBefore[k], cpuAfter[k]];
      return [name, before === undefined || after === undefined ? undefined : after - before];
    });
    cpu.push(["bench + S3/SQS server", (self.user + self.system) / 1000]);
    const at = (iso: string | null | undefined) => (iso ? Date.parse(iso) : Number.NaN);
    phases = [
      ["upload + header check (until 202)", accepted - started],
      ["queued + split (202 → running)", at(view.startedAt) - at(view.createdAt)],
      ["shards run + merge (running → done)", at(view.finishedAt) - at(view.startedAt)],
      ["download", performance.now() - finished],
    ];
    peaks = [
      ...(await Promise.all(
        components.map(
          async ([name, pid]) => [name, await peakRssMb(pid)] as [string, number | undefined],
        ),
      )),
      ["bench + S3/SQS server", process.resourceUsage().maxRSS / 1024],
    ];
  } finally {
    await stack.close();
  }

  const ratio = pipelineMs / baseline.ms;
  const lines = [
    "",
    `bench/pipeline — ${rows} rows, no-op transform, ${workers} local instances, shard size ${shardSize}`,
    `  single process (exceljs stream read → write)  ${fmt(baseline.ms / 1000, 2)} s   peak RSS ${fmt(baseline.peakRssMb)} MB`,
    `  local stack (submit → result downloaded)     ${fmt(pipelineMs / 1000, 2)} s`,
    ...phases.map(([name, ms]) => `      ${name.padEnd(38)} ${fmt(ms / 1000, 2)} s`),
    ...cpu.map(
      ([name, ms]) => `      CPU ${name.padEnd(27)} ${fmt(ms === undefined ? ms : ms / 1000, 2)} s`,
    ),
    `      CPU total ${"".padEnd(21)} ${fmt(cpu.reduce((sum, [, ms]) => sum + (ms ?? 0), 0) / 1000, 2)} s`,
    ...peaks.map(([name, mb]) => `      peak RSS ${name.padEnd(22)} ${fmt(mb)} MB`),
    `  ratio stack / single process                 ${ratio.toFixed(2)}  (target ≤ 1.5)`,
    "",
  ];
  process.stdout.write(lines.join("\n"));
} finally {
  await rm(dir, { recursive: true, force: true });
}
