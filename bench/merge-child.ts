/**
 * bench/merge, the measured side: one merge in a process of its own (the scheduler's part of
 * the work, nothing else), printing its CPU time and peak RSS as one JSON line.
 *
 * Usage (bench/merge.ts runs it): node --import tsx bench/merge-child.ts MERGER_MODULE ENDPOINT BUCKET OP
 */
import { readFile } from "node:fs/promises";
import { pathToFileURL } from "node:url";
import { LOCAL_CREDENTIALS } from "../src/local/aws-server.ts";
import { createAwsClients } from "../src/shared/aws.ts";
import { keys } from "../src/shared/keys.ts";
import { silentLogger } from "../src/shared/logger.ts";
import { ObjectStore } from "../src/shared/object-store.ts";
import { manifestSchema } from "../src/shared/schemas/operation.ts";
import { statusMb } from "./proc.ts";

const [modulePath, endpoint, bucket, op] = process.argv.slice(2);
if (!modulePath || !endpoint || !bucket || !op) {
  console.error("usage: merge-child.ts MERGER_MODULE ENDPOINT BUCKET OP");
  process.exit(2);
}

type MergeFn = (
  deps: { store: ObjectStore; logger: ReturnType<typeof silentLogger> },
  options: { manifest: unknown },
) => Promise<{ rows: number }>;

async function vmHwmMb(): Promise<number> {
  return statusMb(await readFile("/proc/self/status", "utf8"), "VmHWM") ?? 0;
}

const { mergeOperation } = (await import(pathToFileURL(modulePath).href)) as {
  mergeOperation: MergeFn;
};
const clients = createAwsClients({ endpoint, region: "us-east-1", credentials: LOCAL_CREDENTIALS });
const store = new ObjectStore({ s3: clients.s3 }, { bucket });
const manifest = await store.getJson(keys.manifest(op), manifestSchema);
if (!manifest) throw new Error(`no manifest for ${op}`);
const rssBeforeMb = await vmHwmMb();
const cpu = process.cpuUsage();
const started = performance.now();
const result = await mergeOperation({ store, logger: silentLogger() }, { manifest });
const wallS = (performance.now() - started) / 1000;
const used = process.cpuUsage(cpu);
console.log(
  JSON.stringify({
    rows: result.rows,
    wallS,
    cpuS: (used.user + used.system) / 1e6,
    rssBeforeMb,
    peakRssMb: await vmHwmMb(),
    outputMb: ((await store.size(keys.result(op))) ?? 0) / 1024 / 1024,
  }),
);
clients.destroy();
