/**
 * The demo: one real operation end to end on the local stack. Generates a customers workbook,
 * starts a local tax registry (slow, flaky), runs an `http-enrich` operation that looks up each
 * customer's tax due on 3 local instances, downloads the output workbook and prints a summary.
 */
import { createWriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { ApiClient } from "../cli/api-client.ts";
import { summarize, waitForOperation } from "../cli/wait.ts";
import { startLocalStack } from "../local/stack.ts";
import { formatCostTable } from "../shared/cost-format.ts";
import { writeCustomersWorkbook } from "./customers.ts";
import { startTaxRegistry } from "./tax-registry.ts";

export interface DemoOptions {
  /** @default 20000 */
  rows?: number;
  /** @default 3 */
  workers?: number;
  /** Output folder. @default ./out */
  outDir?: string;
  /** Progress bar. @default true */
  progress?: boolean;
}

export interface DemoResult {
  status: string;
  outputFile: string;
}

/** The spec the demo submits: look up each customer's tax due in the registry. */
export function demoSpec(registryUrl: string) {
  return {
    name: "customers tax lookup",
    task: {
      name: "http-enrich",
      options: {
        url: `${registryUrl}/tax/{customer_id}`,
        results: { tax_due: "taxDue", tax_year: "year" },
        concurrency: 150,
        timeoutMs: 5000,
        retries: 5,
      },
    },
    shardSize: 500,
  };
}

export async function runDemo(options: DemoOptions = {}): Promise<DemoResult> {
  const rows = options.rows ?? 20_000;
  const outDir = path.resolve(options.outDir ?? "out");
  const log = (line: string) => process.stdout.write(`${line}\n`);
  await mkdir(outDir, { recursive: true });

  const input = path.join(outDir, "customers.xlsx");
  log(
    `1/5 writing ${rows.toLocaleString("en")} customers to ${path.relative(process.cwd(), input)}`,
  );
  await writeCustomersWorkbook(input, rows);

  const registry = await startTaxRegistry();
  log(`2/5 local tax registry on ${registry.url} (20–80 ms a lookup, ~3% answered 503)`);
  const logDir = path.join(outDir, "logs");
  const maxInstances = options.workers ?? 3;
  // Fleet mode, as in AWS: the scheduler's fleet manager launches (spot) instances for the
  // operation through local EC2 and terminates them after, so the cost report has a fleet to price.
  // The registry is the one non-public source the operation may call (egress policy).
  const stack = await startLocalStack({
    capacity: "fleet",
    maxInstances,
    logDir,
    egressAllow: [new URL(registry.url).host],
  });
  try {
    log(
      `3/5 local stack up: SQS/S3 on ${stack.endpoint}, API on ${stack.apiUrl}; the fleet manager launches up to ${maxInstances} instances (logs in ${path.relative(process.cwd(), logDir)}/)`,
    );
    const client = new ApiClient(stack.apiUrl);
    const { id } = await client.submit(input, demoSpec(registry.url));
    log(`4/5 submitted operation ${id}`);
    const view = await waitForOperation(client, id, { progress: options.progress ?? true });
    const outputFile = path.join(outDir, `${id}-result.xlsx`);
    const hasResult = view.status === "succeeded" || view.status === "succeeded-with-failures";
    if (hasResult) {
      await client.download(id, () => createWriteStream(outputFile));
    }
    log(`5/5 ${summarize(view)}`);
    log(
      `  registry: ${registry.stats.requests} requests, ${registry.stats.failures} answered 503 (retried), ${registry.stats.notFound} customers without a record`,
    );
    if (hasResult) {
      log(`  output:   ${outputFile}`);
    }
    // The demo ends with what the operation cost; a missing report is one line, not a failure.
    try {
      process.stdout.write(formatCostTable(await client.cost(id)));
    } catch (err) {
      log(`  cost:     report unavailable (${(err as Error).message})`);
    }
    return { status: view.status, outputFile };
  } finally {
    await stack.close();
    await registry.close();
  }
}
