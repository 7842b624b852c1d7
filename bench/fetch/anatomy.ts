/**
 * Where a round trip's time goes, for the bare undici loop and for the http-enrich runner
 * against the same 50 ms source: the source stamps when a request reached its handler and when
 * its timer ran (`--stamps`, CLOCK_MONOTONIC like the client's `process.hrtime`), and undici's
 * diagnostics channels stamp the client's side. Per request, in ms:
 *
 * - create → send: undici queues the request until it writes it to a socket
 * - send → arrived: loopback, the source's wake-up and HTTP parsing
 * - arrived → fired: the source's timer (the latency plus its lateness)
 * - fired → headers: the source writes the answer, loopback, the client's wake-up and parsing
 * - headers → done: the rest of the response parsed
 * - done → next create: the client's own work between two requests of one lane (the rest of
 *   the cycle: concurrency × wall ÷ rows − the phases above)
 *
 * The diagnostics subscribers cost CPU of their own, so the efficiencies printed here are a
 * little below `measure.ts`'s. `--raw` runs against `raw-source.ts` (the same answers without
 * node:http) instead of the bench's source, to show the source's own share.
 * Usage: node --import tsx bench/fetch/anatomy.ts [rows] [runs] [--raw]
 */
import diagnosticsChannel from "node:diagnostics_channel";
import { loadavg } from "node:os";
import { silentLogger } from "../../src/shared/logger.ts";
import { bareLoop, benchRows, benchRunner, sourceStats, startSource } from "./measure.ts";

const CONCURRENCY = 200;
const LATENCY_MS = 50;

const PHASES = [
  "create → send",
  "send → arrived",
  "arrived → fired",
  "fired → headers",
  "headers → done",
] as const;

interface Stamps {
  created: bigint;
  sent?: bigint;
  arrived?: bigint;
  fired?: bigint;
  headers?: bigint;
}

/** Sums of each phase over the requests completed since the last `reset`. */
class Anatomy {
  readonly #stamps = new WeakMap<object, Stamps>();
  #sums = PHASES.map(() => 0n);
  #count = 0;

  constructor() {
    diagnosticsChannel.subscribe("undici:request:create", (m) => {
      this.#stamps.set((m as { request: object }).request, { created: process.hrtime.bigint() });
    });
    diagnosticsChannel.subscribe("undici:client:sendHeaders", (m) => {
      const s = this.#stamps.get((m as { request: object }).request);
      if (s) s.sent = process.hrtime.bigint();
    });
    diagnosticsChannel.subscribe("undici:request:headers", (m) => {
      const { request, response } = m as { request: object; response: { headers: Buffer[] } };
      const s = this.#stamps.get(request);
      if (!s) return;
      s.headers = process.hrtime.bigint();
      for (let k = 0; k < response.headers.length; k += 2) {
        if (response.headers[k]?.toString("latin1").toLowerCase() !== "x-stamps") continue;
        const [arrived, fired] = (response.headers[k + 1]?.toString("latin1") ?? "").split(",");
        s.arrived = BigInt(arrived ?? 0);
        s.fired = BigInt(fired ?? 0);
      }
    });
    diagnosticsChannel.subscribe("undici:request:trailers", (m) => {
      const s = this.#stamps.get((m as { request: object }).request);
      if (!s?.sent || !s.arrived || !s.fired || !s.headers) return;
      const done = process.hrtime.bigint();
      const points = [s.created, s.sent, s.arrived, s.fired, s.headers, done];
      for (let k = 0; k < PHASES.length; k++) {
        this.#sums[k]! += points[k + 1]! - points[k]!;
      }
      this.#count++;
    });
  }

  reset(): void {
    this.#sums = PHASES.map(() => 0n);
    this.#count = 0;
  }

  /** Mean ms per phase, and the rest of the cycle for `seconds` of wall over `rows` rows. */
  report(label: string, rows: number, seconds: number, cpuSeconds: number): string {
    const cycleMs = ((seconds * 1000) / rows) * CONCURRENCY;
    const means = this.#sums.map((sum) => Number(sum) / 1e6 / Math.max(1, this.#count));
    const rest = cycleMs - means.reduce((a, b) => a + b, 0);
    const efficiency = rows / seconds / (CONCURRENCY / (LATENCY_MS / 1000));
    const parts = PHASES.map((p, k) => `${p} ${means[k]!.toFixed(3)}`);
    return [
      `${label}: efficiency ${efficiency.toFixed(3)}, ${cpuSeconds.toFixed(2)} CPU-s, cycle ${cycleMs.toFixed(2)} ms (${this.#count} requests stamped)`,
      `  ${parts.join("; ")}; done → next create ${rest.toFixed(3)}`,
    ].join("\n");
  }
}

// Numbers are the arguments that are not flags (`--raw` may come first).
const [rowsArg, runsArg] = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const rows = Number(rowsArg ?? 20_000);
const runs = Number(runsArg ?? 1);
const anatomy = new Anatomy();
const raw = process.argv.includes("--raw");
const source = await startSource(
  LATENCY_MS,
  ["--stamps"],
  raw ? "raw-source.ts" : "slow-source.ts",
);
try {
  const runner = benchRunner(source.port, CONCURRENCY);
  const input = benchRows(rows);
  const ctx = { signal: new AbortController().signal, logger: silentLogger() };
  await runner.runRows(input.slice(0, 5_000), ctx);
  for (let run = 0; run < runs; run++) {
    const load = loadavg()[0] ?? 0;
    const before = await sourceStats(source.port);
    const floor = await bareLoop(source.port, input, CONCURRENCY, () => anatomy.reset());
    const middle = await sourceStats(source.port);
    const bareReport = anatomy.report("bare loop", rows, floor.seconds, floor.cpuSeconds);
    anatomy.reset();
    const cpu = process.cpuUsage();
    const started = performance.now();
    await runner.runRows(input, ctx);
    const seconds = (performance.now() - started) / 1000;
    const used = process.cpuUsage(cpu);
    const after = await sourceStats(source.port);
    const late = (a: typeof before, b: typeof before) =>
      `${((b.lateMs - a.lateMs) / Math.max(1, b.served - a.served)).toFixed(2)} ms late, ${(((b.cpuMs - a.cpuMs) / Math.max(1, b.served - a.served)) * 1000).toFixed(0)} µs CPU per request`;
    process.stdout.write(
      [
        `run ${run + 1} (${raw ? "raw-source.ts" : "slow-source.ts"}), load ${load.toFixed(1)} → ${(loadavg()[0] ?? 0).toFixed(1)}; the source (its own count) ${late(before, middle)} for the bare loop, ${late(middle, after)} for the runner`,
        bareReport,
        anatomy.report("runner", rows, seconds, (used.user + used.system) / 1e6),
        "",
      ].join("\n"),
    );
  }
  await runner.close();
} finally {
  source.child.kill("SIGTERM");
}
