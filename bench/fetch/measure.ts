/**
 * Fetch efficiency of the http-enrich runner: rows per second achieved ÷ what `concurrency`
 * requests in flight against a source of fixed latency could do at best (concurrency ÷
 * latency). The source runs in a child process. Figures, not assertions.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import { createInterface } from "node:readline";
import { parseEgressAllow } from "../../src/shared/egress.ts";
import { silentLogger } from "../../src/shared/logger.ts";
import { httpEnrichOptionsSchema } from "../../src/shared/schemas/tasks.ts";
import { HttpEnrichRunner } from "../../src/worker/tasks/http-enrich.ts";
import type { TaskRow } from "../../src/worker/tasks/task.ts";

export interface FetchFigures {
  rows: number;
  concurrency: number;
  latencyMs: number;
  seconds: number;
  /** Rows per second ÷ (concurrency ÷ latency). */
  efficiency: number;
  /** CPU-seconds of this process (the runner) during the run. */
  cpuSeconds: number;
}

async function startSource(latencyMs: number): Promise<{ port: number; child: ChildProcess }> {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", path.join(import.meta.dirname, "slow-source.ts"), String(latencyMs)],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const lines = createInterface({ input: child.stdout! });
  const [line] = (await once(lines, "line")) as [string];
  lines.close();
  return { port: Number(line), child };
}

/** Runs `rows` rows through one runner (as one shard would) and returns the figures. */
export async function measureFetch(options: {
  rows: number;
  concurrency: number;
  latencyMs: number;
}): Promise<FetchFigures> {
  const { rows, concurrency, latencyMs } = options;
  const source = await startSource(latencyMs);
  try {
    const spec = httpEnrichOptionsSchema.parse({
      url: `http://127.0.0.1:${source.port}/lookup?id={id}`,
      results: { n: "n" },
      concurrency,
      adaptiveConcurrency: false,
    });
    const runner = new HttpEnrichRunner(
      { logger: silentLogger(), egress: parseEgressAllow("127.0.0.1/32") },
      spec,
      { headers: ["id"], operationId: "bench" },
    );
    const input: TaskRow[] = Array.from({ length: rows }, (_, k) => ({
      index: k,
      values: { id: `c${k}` },
    }));
    const ctx = { signal: new AbortController().signal, logger: silentLogger() };
    // Warm-up: open the pool's connections, as a worker's earlier shards would have.
    await runner.runRows(input.slice(0, concurrency), ctx);
    const cpu = process.cpuUsage();
    const started = performance.now();
    const results = await runner.runRows(input, ctx);
    const seconds = (performance.now() - started) / 1000;
    const used = process.cpuUsage(cpu);
    await runner.close();
    const failed = results.filter((r) => r.e !== undefined).length;
    if (failed > 0) throw new Error(`${failed} rows failed: ${results.find((r) => r.e)?.e}`);
    return {
      rows,
      concurrency,
      latencyMs,
      seconds,
      efficiency: rows / seconds / (concurrency / (latencyMs / 1000)),
      cpuSeconds: (used.user + used.system) / 1e6,
    };
  } finally {
    source.child.kill("SIGTERM");
  }
}

if (process.argv[1] === import.meta.filename) {
  const rows = Number(process.argv[2] ?? 20_000);
  const figures = await measureFetch({ rows, concurrency: 200, latencyMs: 50 });
  process.stdout.write(`${JSON.stringify(figures)}\n`);
}
