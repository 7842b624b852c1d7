/**
 * Fetch efficiency of the http-enrich runner: rows per second achieved ÷ what `concurrency`
 * requests in flight against a source of fixed latency could do at best (concurrency ÷
 * latency). The source runs in a child process. Figures, not assertions.
 *
 * The measured pass follows a warm-up pass on the same runner, as a worker's later shards
 * follow its first: the warm-up opens the pool's connections and lets V8 optimise the fetch
 * path (a fresh process runs its first few thousand rows several times slower per row, which
 * on a 5-second pass cost 0.1-0.2 of efficiency). The warm-up's own efficiency is reported too
 * (`coldEfficiency`), so the start-up cost stays visible.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { loadavg } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { Pool } from "undici";
import { parseEgressAllow } from "../../src/shared/egress.ts";
import { silentLogger } from "../../src/shared/logger.ts";
import { httpEnrichOptionsSchema } from "../../src/shared/schemas/tasks.ts";
import { HttpEnrichRunner } from "../../src/worker/tasks/http-enrich.ts";
import type { TaskContext, TaskRow } from "../../src/worker/tasks/task.ts";

export interface FetchFigures {
  rows: number;
  concurrency: number;
  latencyMs: number;
  seconds: number;
  /** Rows per second ÷ (concurrency ÷ latency). */
  efficiency: number;
  /** CPU-seconds of this process (the runner) during the run. */
  cpuSeconds: number;
  /** Rows of the warm-up pass, run first on a fresh runner (no connections, cold code). */
  warmupRows: number;
  /** The warm-up pass's efficiency: what a worker's first shard gets. */
  coldEfficiency: number;
  /**
   * How late the source itself answered during the measured pass, on average, beyond its
   * latency (its own event loop; on a loaded machine it is starved too).
   */
  sourceLateMs: number;
  /**
   * A bare undici loop's efficiency (the same pool size, `request` + `JSON.parse`, no runner)
   * against the same source right before: what this machine allows at its load just then.
   */
  floorEfficiency: number;
  /** CPU-seconds of the bare loop over the same rows. */
  floorCpuSeconds: number;
  /** 1-minute load average before and after the measured pass. */
  load: [number, number];
}

/**
 * Starts the source in a child process: `slow-source.ts` (node:http, the bench's), or
 * `raw-source.ts`; `args` go after the latency (`--stamps`).
 */
export async function startSource(
  latencyMs: number,
  args: readonly string[] = [],
  script: "slow-source.ts" | "raw-source.ts" = "slow-source.ts",
): Promise<{ port: number; child: ChildProcess }> {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", path.join(import.meta.dirname, script), String(latencyMs), ...args],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const lines = createInterface({ input: child.stdout! });
  const [line] = (await once(lines, "line")) as [string];
  lines.close();
  return { port: Number(line), child };
}

/** The source's counters (requests served, milliseconds late in total, its CPU milliseconds). */
export async function sourceStats(
  port: number,
): Promise<{ served: number; lateMs: number; cpuMs: number }> {
  const res = await fetch(`http://127.0.0.1:${port}/stats`);
  return (await res.json()) as { served: number; lateMs: number; cpuMs: number };
}

/**
 * The same rows through a bare undici pool: the floor of what any client gets here. A first
 * round of `concurrency` rows opens the connections; `beforeMeasured` runs after it.
 */
export async function bareLoop(
  port: number,
  rows: readonly TaskRow[],
  concurrency: number,
  beforeMeasured?: () => void,
): Promise<{ seconds: number; cpuSeconds: number }> {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: concurrency });
  const run = async (batch: readonly TaskRow[]) => {
    let next = 0;
    const lane = async () => {
      while (next < batch.length) {
        const row = batch[next++]!;
        const res = await pool.request({ path: `/lookup?id=${row.values.id}`, method: "GET" });
        JSON.parse(await res.body.text());
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, batch.length) }, lane));
  };
  try {
    await run(rows.slice(0, concurrency));
    beforeMeasured?.();
    const cpu = process.cpuUsage();
    const started = performance.now();
    await run(rows);
    const used = process.cpuUsage(cpu);
    return {
      seconds: (performance.now() - started) / 1000,
      cpuSeconds: (used.user + used.system) / 1e6,
    };
  } finally {
    await pool.close();
  }
}

/** The bench's runner against the source on `port`: `{id}` in the URL, one result column. */
export function benchRunner(port: number, concurrency: number): HttpEnrichRunner {
  const spec = httpEnrichOptionsSchema.parse({
    url: `http://127.0.0.1:${port}/lookup?id={id}`,
    results: { n: "n" },
    concurrency,
    adaptiveConcurrency: false,
  });
  return new HttpEnrichRunner(
    { logger: silentLogger(), egress: parseEgressAllow("127.0.0.1/32") },
    spec,
    { headers: ["id"], operationId: "bench" },
  );
}

/** `count` rows `{ id: "c<k>" }`. */
export function benchRows(count: number): TaskRow[] {
  return Array.from({ length: count }, (_, k) => ({ index: k, values: { id: `c${k}` } }));
}

/** Runs `rows` rows through one runner (as one shard would) and returns the figures. */
export async function measureFetch(options: {
  rows: number;
  concurrency: number;
  latencyMs: number;
  /** @default min(rows, 5000) */
  warmupRows?: number;
}): Promise<FetchFigures> {
  const { rows, concurrency, latencyMs } = options;
  const warmupRows = options.warmupRows ?? Math.min(rows, 5_000);
  const source = await startSource(latencyMs);
  try {
    const runner = benchRunner(source.port, concurrency);
    const input = benchRows(rows);
    const ctx = { signal: new AbortController().signal, logger: silentLogger() };
    const idealPerSecond = concurrency / (latencyMs / 1000);
    const pass = async (batch: TaskRow[], c: TaskContext) => {
      const started = performance.now();
      const results = await runner.runRows(batch, c);
      const seconds = (performance.now() - started) / 1000;
      const failed = results.filter((r) => r.e !== undefined).length;
      if (failed > 0) throw new Error(`${failed} rows failed: ${results.find((r) => r.e)?.e}`);
      return { seconds, efficiency: batch.length / seconds / idealPerSecond };
    };
    const cold = await pass(input.slice(0, warmupRows), ctx);
    const floor = await bareLoop(source.port, input, concurrency);
    const loadBefore = loadavg()[0] ?? 0;
    const sourceBefore = await sourceStats(source.port);
    const cpu = process.cpuUsage();
    const warm = await pass(input, ctx);
    const used = process.cpuUsage(cpu);
    const sourceAfter = await sourceStats(source.port);
    const loadAfter = loadavg()[0] ?? 0;
    await runner.close();
    return {
      rows,
      concurrency,
      latencyMs,
      seconds: warm.seconds,
      efficiency: warm.efficiency,
      cpuSeconds: (used.user + used.system) / 1e6,
      warmupRows,
      coldEfficiency: cold.efficiency,
      floorEfficiency: rows / floor.seconds / idealPerSecond,
      floorCpuSeconds: floor.cpuSeconds,
      sourceLateMs:
        (sourceAfter.lateMs - sourceBefore.lateMs) /
        Math.max(1, sourceAfter.served - sourceBefore.served),
      load: [loadBefore, loadAfter],
    };
  } finally {
    source.child.kill("SIGTERM");
  }
}

if (process.argv[1] === import.meta.filename) {
  const rows = Number(process.argv[2] ?? 20_000);
  const runs = Number(process.argv[3] ?? 1);
  for (let k = 0; k < runs; k++) {
    const figures = await measureFetch({ rows, concurrency: 200, latencyMs: 50 });
    process.stdout.write(`${JSON.stringify(figures)}\n`);
  }
}
