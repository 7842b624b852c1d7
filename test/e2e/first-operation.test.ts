/**
 * The walking skeleton, end to end: the local stack with 3 worker instances, a 2,000-row
 * workbook, an http-enrich operation against the local tax registry (slow, 3% 503s, some
 * customers unknown), and every output row checked against the input and the registry.
 */
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitForOperation } from "../../src/cli/wait.ts";
import { customerRow, writeCustomersWorkbook } from "../../src/demo/customers.ts";
import { demoSpec } from "../../src/demo/run-demo.ts";
import { startTaxRegistry, type TaxRegistry, taxRecordFor } from "../../src/demo/tax-registry.ts";
import { downloadRows, startTestStack, type TestStack } from "../support/local-stack.ts";

const ROWS = 2_000;

describe("first operation end to end (local stack, 3 instances)", () => {
  let env: TestStack;
  let registry: TaxRegistry;

  beforeAll(async () => {
    registry = await startTaxRegistry();
    env = await startTestStack("e2e", { workers: 3, egressAllow: [new URL(registry.url).host] });
  }, 60_000);

  afterAll(async () => {
    await env?.close();
    await registry?.close();
  }, 60_000);

  it("enriches every row exactly once, in input order, with the registry's values", async () => {
    const { dir, client } = env;
    const input = path.join(dir, "customers.xlsx");
    await writeCustomersWorkbook(input, ROWS);
    const spec = { ...demoSpec(registry.url), shardSize: 150 };
    const { id } = await client.submit(input, spec);

    const view = await waitForOperation(client, id, { progress: false, intervalMs: 200 });
    expect(view.status).toBe("succeeded");
    expect(view.rows.total).toBe(ROWS);
    expect(view.shards.total).toBe(Math.ceil(ROWS / 150));
    expect(registry.stats.failures).toBeGreaterThan(0); // the retries were exercised

    const rows = await downloadRows(client, id);
    expect(rows[0]).toEqual([
      "customer_id",
      "name",
      "signup_date",
      "balance",
      "tax_due",
      "tax_year",
      "error",
    ]);
    expect(rows).toHaveLength(ROWS + 1);

    let unknown = 0;
    for (let i = 0; i < ROWS; i++) {
      const cells = [undefined, ...rows[i + 1]!]; // 1-based like exceljs row.values
      const expected = customerRow(i);
      const record = taxRecordFor(expected.customer_id);
      expect(cells[1]).toBe(expected.customer_id);
      expect(cells[2]).toBe(expected.name);
      expect((cells[3] as Date).toISOString()).toBe(expected.signup_date.toISOString());
      expect(cells[4]).toBe(expected.balance);
      if (record) {
        expect(cells[5]).toBe(record.taxDue);
        expect(cells[6]).toBe(record.year);
      } else {
        unknown++;
        expect(cells[5] ?? null).toBeNull();
      }
      expect(cells[7] ?? null).toBeNull();
    }
    expect(unknown).toBeGreaterThan(0); // some customers have no record
  }, 180_000);
});
