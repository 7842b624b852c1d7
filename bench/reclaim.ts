/**
 * bench/reclaim: what a spot reclaim costs, on the real local S3/SQS server with worker
 * processes (the same entry point as the local stack and EC2). Figures, not assertions.
 *
 * For each checkpoint interval (everyRows; everySeconds is left long so rows decide) and each
 * kind of reclaim, a shard of `--rows` rows runs on worker A with a transform plugin that takes
 * `--row-ms` of CPU a row and appends every row it finishes to a counter file. A is reclaimed
 * part-way:
 *   notice  a spot notice is published on A's metadata endpoint; A drains (final checkpoint,
 *           message visible again at once) and exits;
 *   kill    A gets SIGKILL; its message reappears after the visibility timeout (5 s here).
 * Worker B then finishes the shard. Rows recomputed = rows finished in all − rows in the shard.
 *
 * Printed: (a) requeue latency after a notice (published → seen by A → receivable again),
 * (b) rows recomputed per reclaim with and without a notice against the interval, (c) the
 * checkpoint write time (chunk + checkpoint + attempt record) as a fraction of the time
 * between checkpoints, from the workers' debug lines, and (d) what checkpointing costs the
 * rows: the same shard run whole by one worker with each interval and with no checkpoints.
 *
 * Usage: npm run bench:reclaim -- [--rows 10000] [--row-ms 2] [--trials 2] [--intervals 50,100,200,1000]
 * (KEEP=1 keeps the temporary directory with the workers' logs.)
 */
import { appendFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { startLocalImds } from "../src/local/imds.ts";
import { spawnComponent } from "../src/local/processes.ts";
import { keys } from "../src/shared/keys.ts";
import { resultRowSchema } from "../src/shared/schemas/cells.ts";
import { checkpointSchema, shardDoneSchema } from "../src/shared/schemas/shard.ts";
import {
  freshQueues,
  localAwsEnv,
  startLocalAws,
  waitForMessage,
} from "../test/support/local-aws.ts";
import { writeManifest } from "../test/support/manifests.ts";
import { waitFor } from "../test/support/wait.ts";
import { logLines, writeSlice } from "../test/support/worker.ts";

const { values } = parseArgs({
  options: {
    rows: { type: "string", default: "10000" },
    "row-ms": { type: "string", default: "2" },
    trials: { type: "string", default: "2" },
    intervals: { type: "string", default: "50,100,200,1000" },
  },
});
const ROWS = Number(values.rows);
const ROW_MS = Number(values["row-ms"]);
const TRIALS = Number(values.trials);
const INTERVALS = values.intervals.split(",").map(Number);
const VISIBILITY_S = 5;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length === 0 ? Number.NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

const dir = await mkdtemp(path.join(tmpdir(), "shardfleet-reclaim-"));
const pluginDir = path.join(dir, "plugins");
await mkdir(pluginDir);
// ~ROW_MS of CPU a row; every finished row is appended to the counter file.
await writeFile(
  path.join(pluginDir, "bench-row.mjs"),
  `import { appendFileSync } from "node:fs";
export const columns = ["len"];
export default function (row, options) {
  const end = performance.now() + options.ms;
  while (performance.now() < end);
  appendFileSync(options.counter, row.n + "\\n");
  return { len: String(row.n).length };
}
`,
);

const aws = await startLocalAws("reclaim", { visibilityTimeoutSeconds: VISIBILITY_S });
const { store, queue } = aws;

interface Trial {
  everyRows: number;
  mode: "notice" | "kill";
  recomputed: number;
  /** Notice published → seen by A → receivable again (ms). */
  seenMs?: number;
  requeueMs?: number;
  checkpointMs: number[];
  sinceLastMs: number[];
}

function workerEnv(name: string, queues: { work: string; dlq: string }, imds?: string) {
  return {
    ...localAwsEnv(aws),
    ...(imds
      ? { AWS_EC2_METADATA_SERVICE_ENDPOINT: imds, SHARDFLEET_INTERRUPTION_POLL_S: "1" }
      : { AWS_EC2_METADATA_DISABLED: "true" }),
    SHARDFLEET_WORK_QUEUE_URL: queues.work,
    SHARDFLEET_DLQ_URL: queues.dlq,
    SHARDFLEET_INSTANCE_ID: name,
    SHARDFLEET_MARKET: "spot",
    SHARDFLEET_POLL_WAIT_S: "1",
    SHARDFLEET_VISIBILITY_TIMEOUT_S: String(VISIBILITY_S),
    SHARDFLEET_PLUGIN_DIR: pluginDir,
    SHARDFLEET_LOG_LEVEL: "debug",
  };
}

let trialNo = 0;

/** A fresh queue pair and a one-shard operation of ROWS rows on it. */
async function setup(everyRows: number) {
  const n = ++trialNo;
  const op = `bench-${n}`;
  const counter = path.join(dir, `counter-${n}.txt`);
  await appendFile(counter, "");
  const queues = await freshQueues(aws, VISIBILITY_S);
  await writeManifest(
    store,
    op,
    ["n"],
    {
      name: "transform",
      options: { module: "bench-row", batchSize: 5, options: { ms: ROW_MS, counter } },
    },
    { checkpoint: { everyRows, everySeconds: 3600 } },
  );
  const cells = Array.from({ length: ROWS }, (_, k) => [k]);
  await queue.sendShards(queues.work, [await writeSlice(store, op, "s000000", 0, cells)]);
  return { n, op, counter, queues };
}

/**
 * The figures mean nothing if the commit is wrong: every row of the shard must be in its chunks
 * exactly once, with a result and no error.
 */
async function checkCommit(op: string): Promise<void> {
  const done = await store.getJson(keys.done(op, "s000000"), shardDoneSchema);
  const seen = new Map<number, number>();
  let errors = 0;
  for (const chunk of done?.chunks ?? []) {
    const text = (await store.getText(chunk.key)) ?? "";
    for (const line of text.split("\n").filter(Boolean)) {
      const row = resultRowSchema.parse(JSON.parse(line));
      if (row.i < chunk.start || row.i >= chunk.end) continue;
      seen.set(row.i, (seen.get(row.i) ?? 0) + 1);
      if (row.e) errors++;
    }
  }
  const missing = ROWS - seen.size;
  const doubled = [...seen.values()].filter((n) => n > 1).length;
  if (missing || doubled || errors) {
    throw new Error(
      `${op}: commit is wrong: ${missing} rows missing, ${doubled} doubled, ${errors} errors`,
    );
  }
}

/** One worker runs the whole shard; the time from its start to its commit, in ms. */
async function wholeRun(everyRows: number): Promise<number> {
  const { n, op, queues } = await setup(everyRows);
  const w = spawnComponent("worker", {
    name: `w-${n}`,
    env: workerEnv(`w-${n}`, queues),
    logDir: path.join(dir, "logs"),
  });
  try {
    await waitFor(
      "the commit",
      () => store.getJson(keys.done(op, "s000000"), shardDoneSchema),
      120_000,
    );
    await w.stop(10_000);
  } finally {
    await w.kill();
  }
  const lines = await logLines(w);
  const at = (msg: string) => Date.parse(String(lines.find((l) => l.msg === msg)?.time));
  return at("shard committed") - at("shard started");
}

async function trial(everyRows: number, mode: "notice" | "kill"): Promise<Trial> {
  const { n, op, counter, queues } = await setup(everyRows);

  const imds = await startLocalImds({ instanceId: `a-${n}`, market: "spot" });
  const logDir = path.join(dir, "logs");
  const a = spawnComponent("worker", {
    name: `a-${n}`,
    env: workerEnv(`a-${n}`, queues, imds.endpoint),
    logDir,
  });
  const out: Trial = { everyRows, mode, recomputed: 0, checkpointMs: [], sinceLastMs: [] };
  try {
    await waitFor(
      "A's first checkpoint",
      () => store.getJson(keys.checkpoint(op, "s000000"), checkpointSchema),
      30_000,
    );
    // Somewhere inside a checkpoint interval.
    await sleep(200 + Math.random() * 600);
    if (mode === "notice") {
      const published = Date.now();
      imds.noticeInterruption(new Date(published + 120_000));
      const m = await waitForMessage(
        "the message to be receivable again",
        queue,
        queues.work,
        30_000,
      );
      out.requeueMs = Date.now() - published;
      await queue.changeVisibility(queues.work, m.receiptHandle, 0);
      await a.exited;
      const seen = (await logLines(a)).find((l) => l.msg === "interruption notice; draining");
      if (seen) out.seenMs = Date.parse(String(seen.time)) - published;
    } else {
      await a.kill();
    }
  } finally {
    await a.kill();
    await imds.close();
  }

  const b = spawnComponent("worker", { name: `b-${n}`, env: workerEnv(`b-${n}`, queues), logDir });
  try {
    await waitFor(
      "B's commit",
      () => store.getJson(keys.done(op, "s000000"), shardDoneSchema),
      60_000,
    );
    await b.stop(10_000);
  } finally {
    await b.kill();
  }
  const finished = (await readFile(counter, "utf8")).split("\n").filter(Boolean).length;
  out.recomputed = finished - ROWS;
  await checkCommit(op);
  for (const line of [...(await logLines(a)), ...(await logLines(b))]) {
    if (line.msg === "checkpoint written") {
      out.checkpointMs.push(Number(line.checkpointMs));
      out.sinceLastMs.push(Number(line.sinceLastMs));
    }
  }
  process.stdout.write(
    `  everyRows ${everyRows}, ${mode}: recomputed ${out.recomputed}` +
      (out.requeueMs === undefined ? "" : `, requeue ${out.requeueMs} ms`) +
      "\n",
  );
  return out;
}

const trials: Trial[] = [];
try {
  process.stdout.write(
    `reclaim bench: ${ROWS} rows, ${ROW_MS} ms CPU a row, batchSize 5, ${TRIALS} trial(s) each\n`,
  );
  for (const everyRows of INTERVALS) {
    for (let t = 0; t < TRIALS; t++) {
      trials.push(await trial(everyRows, "notice"));
      trials.push(await trial(everyRows, "kill"));
    }
  }

  const notices = trials.filter((t) => t.requeueMs !== undefined);
  const requeue = notices.map((t) => t.requeueMs!);
  const seen = notices.flatMap((t) => (t.seenMs === undefined ? [] : [t.seenMs]));
  const afterSeen = notices.flatMap((t) =>
    t.seenMs === undefined ? [] : [t.requeueMs! - t.seenMs],
  );
  process.stdout.write(
    "\n(a) requeue latency after a notice (ms; A polls IMDS every 1 s, drain grace 2 s)\n",
  );
  process.stdout.write("| | median | max | n |\n| --- | --- | --- | --- |\n");
  for (const [label, xs] of [
    ["published → seen by the worker", seen],
    ["seen → message receivable again", afterSeen],
    ["published → message receivable again", requeue],
  ] as const) {
    process.stdout.write(
      `| ${label} | ${median(xs).toFixed(0)} | ${Math.max(...xs).toFixed(0)} | ${xs.length} |\n`,
    );
  }

  process.stdout.write("\n(b) rows recomputed per reclaim\n");
  process.stdout.write(
    "| everyRows | with notice: mean (max) | SIGKILL, no notice: mean (max) |\n",
  );
  process.stdout.write("| --- | --- | --- |\n");
  for (const everyRows of INTERVALS) {
    const of = (mode: Trial["mode"]) =>
      trials.filter((t) => t.everyRows === everyRows && t.mode === mode).map((t) => t.recomputed);
    const cell = (xs: number[]) => `${mean(xs).toFixed(0)} (${Math.max(...xs)})`;
    process.stdout.write(`| ${everyRows} | ${cell(of("notice"))} | ${cell(of("kill"))} |\n`);
  }

  process.stdout.write("\n(c) checkpoint write time against the time between checkpoints\n");
  process.stdout.write(
    "| everyRows | checkpoints | write ms: median (max) | interval ms: median | write / interval |\n",
  );
  process.stdout.write("| --- | --- | --- | --- | --- |\n");
  for (const everyRows of INTERVALS) {
    const these = trials.filter((t) => t.everyRows === everyRows);
    const writes = these.flatMap((t) => t.checkpointMs);
    const gaps = these.flatMap((t) => t.sinceLastMs);
    process.stdout.write(
      `| ${everyRows} | ${writes.length} | ${median(writes).toFixed(1)} (${Math.max(...writes).toFixed(1)}) | ${median(gaps).toFixed(0)} | ${((100 * median(writes)) / median(gaps)).toFixed(1)} % |\n`,
    );
  }
  process.stdout.write(
    `\n(d) rows' cost of checkpointing: one worker runs the whole shard (median of ${TRIALS}, interleaved)\n`,
  );
  process.stdout.write(
    "| everyRows | shard time (s) | vs. no checkpoints |\n| --- | --- | --- |\n",
  );
  const configs = [1_000_000, ...INTERVALS];
  const times = new Map<number, number[]>(configs.map((c) => [c, []]));
  for (let t = 0; t < TRIALS; t++) {
    for (const everyRows of t % 2 ? [...configs].reverse() : configs) {
      times.get(everyRows)!.push(await wholeRun(everyRows));
    }
  }
  const none = median(times.get(1_000_000)!);
  for (const everyRows of configs) {
    const ms = median(times.get(everyRows)!);
    const label = everyRows === 1_000_000 ? "none" : String(everyRows);
    const vs = everyRows === 1_000_000 ? "—" : `${(((ms - none) / none) * 100).toFixed(1)} %`;
    process.stdout.write(`| ${label} | ${(ms / 1000).toFixed(2)} | ${vs} |\n`);
  }
} finally {
  await aws.close();
  if (!process.env.KEEP) await rm(dir, { recursive: true, force: true });
}
