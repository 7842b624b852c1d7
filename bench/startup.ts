/**
 * bench/startup: how long a worker takes from process start to its first long poll, run as the
 * image runs it (compiled: `node dist/worker/main.js`) and from the sources through tsx (`node
 * --import tsx src/worker/main.ts`, how every instance started before the build existed).
 * Figures, not assertions.
 *
 * The worker talks to the real local SQS/S3 server through a forwarding proxy on loopback that
 * notes when the first ReceiveMessage arrives; the worker's CPU time at that moment comes from
 * /proc (Linux). Each mode gets one unmeasured warm-up start (tsx keeps a transform cache on
 * disk, the OS a file cache), then `--runs` measured starts, alternating modes.
 *
 * Usage: npm run bench:startup -- [--runs 7]     (builds dist/ first)
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createServer, request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { parseArgs } from "node:util";
import { freshQueues, localAwsEnv, startLocalAws } from "../test/support/local-aws.ts";
import { statCpuMs } from "./proc.ts";

const { values } = parseArgs({ options: { runs: { type: "string", default: "7" } } });
const RUNS = Number(values.runs);
const root = path.resolve(import.meta.dirname, "..");
const compiledEntry = path.join(root, "dist", "worker", "main.js");
if (!existsSync(compiledEntry)) {
  process.stderr.write("bench/startup: dist/ is missing: run `npm run build` first\n");
  process.exit(1);
}

type Mode = "compiled" | "tsx";
const ARGS: Record<Mode, string[]> = {
  compiled: [compiledEntry],
  tsx: ["--import", import.meta.resolve("tsx"), path.join(root, "src", "worker", "main.ts")],
};

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
function cpuSeconds(pid: number): number {
  return statCpuMs(readFileSync(`/proc/${pid}/stat`, "utf8")) / 1000;
}

const aws = await startLocalAws("startup-bench");
const upstream = new URL(aws.server.endpoint);

/** Waiters for the next ReceiveMessage that reaches the proxy. */
let onReceive: (() => void) | undefined;
const proxy = createServer((req, res) => {
  const target = String(req.headers["x-amz-target"] ?? "");
  if (target.endsWith(".ReceiveMessage")) onReceive?.();
  const out = httpRequest(
    {
      host: upstream.hostname,
      port: upstream.port,
      path: req.url,
      method: req.method,
      headers: req.headers,
    },
    (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    },
  );
  out.on("error", () => res.destroy());
  req.pipe(out);
});
await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;

const queues = await freshQueues(aws);
// The SDK sends SQS calls to the queue URL's host: point that at the proxy too.
const viaProxy = (url: string) => url.replace(upstream.origin, proxyUrl);

async function startOnce(mode: Mode, n: number): Promise<{ ms: number; cpuS: number }> {
  const received = new Promise<void>((resolve) => {
    onReceive = resolve;
  });
  const started = performance.now();
  const child: ChildProcess = spawn(process.execPath, ARGS[mode], {
    env: {
      PATH: process.env.PATH,
      ...localAwsEnv(aws),
      AWS_ENDPOINT_URL: proxyUrl,
      AWS_EC2_METADATA_DISABLED: "true",
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
      SHARDFLEET_WORK_QUEUE_URL: viaProxy(queues.work),
      SHARDFLEET_INSTANCE_ID: `startup-${mode}-${n}`,
      SHARDFLEET_LOG_LEVEL: "warn",
    },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  await Promise.race([
    received,
    exited.then(() => {
      throw new Error(`${mode} worker exited before its first long poll`);
    }),
  ]);
  const ms = performance.now() - started;
  const cpuS = cpuSeconds(child.pid!);
  onReceive = undefined;
  child.kill("SIGKILL");
  await exited;
  return { ms, cpuS };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const results: Record<Mode, Array<{ ms: number; cpuS: number }>> = { compiled: [], tsx: [] };
for (const mode of ["compiled", "tsx"] as const) await startOnce(mode, 0);
for (let n = 1; n <= RUNS; n++) {
  for (const mode of ["compiled", "tsx"] as const) results[mode].push(await startOnce(mode, n));
}

const summary = (mode: Mode) => {
  const ms = results[mode].map((r) => r.ms);
  return {
    medianMs: Math.round(median(ms)),
    minMs: Math.round(Math.min(...ms)),
    maxMs: Math.round(Math.max(...ms)),
    medianCpuS: Number(median(results[mode].map((r) => r.cpuS)).toFixed(2)),
  };
};
const compiled = summary("compiled");
const tsx = summary("tsx");
process.stdout.write(
  [
    `worker start -> first long poll (ReceiveMessage), ${RUNS} runs each, node ${process.version}`,
    `  compiled (node dist/worker/main.js)        median ${compiled.medianMs} ms (${compiled.minMs}-${compiled.maxMs}), ${compiled.medianCpuS} CPU-s`,
    `  tsx (node --import tsx src/worker/main.ts) median ${tsx.medianMs} ms (${tsx.minMs}-${tsx.maxMs}), ${tsx.medianCpuS} CPU-s`,
    `  tsx / compiled: ${(tsx.medianMs / compiled.medianMs).toFixed(2)}x time, ${(tsx.medianCpuS / compiled.medianCpuS).toFixed(2)}x CPU`,
    "",
  ].join("\n"),
);
proxy.close();
await aws.close();
