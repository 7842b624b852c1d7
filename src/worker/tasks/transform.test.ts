import { createHash } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ShardfleetError } from "../../shared/errors.ts";
import { silentLogger } from "../../shared/logger.ts";
import type { Cell } from "../../shared/schemas/cells.ts";
import { transformOptionsSchema } from "../../shared/schemas/tasks.ts";
import { createTaskRunner } from "./registry.ts";
import type { TaskRow, TaskRunner } from "./task.ts";
import { createTransformRunner, resultRowsOf } from "./transform.ts";

const repoPlugins = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../plugins");
let testPlugins: string;

beforeAll(async () => {
  testPlugins = await mkdtemp(path.join(tmpdir(), "shardfleet-plugins-"));
  await writeFile(
    path.join(testPlugins, "picky.mjs"),
    `export const columns = ["double"];
     export default async function (row) {
       if (row.n === 2) throw new Error("two is\\nnot allowed");
       return { double: row.n * 2 };
     }`,
  );
  await writeFile(
    path.join(testPlugins, "dates.js"),
    `export default function (row, options) {
       return { isDate: row.born instanceof Date, year: row.born.getUTCFullYear(),
                nextDay: new Date(row.born.getTime() + 86400000), tag: options.tag, nested: { a: 1 } };
     }`,
  );
  await writeFile(path.join(testPlugins, "scalar.mjs"), "export default () => 42;");
  await writeFile(
    path.join(testPlugins, "varying.mjs"),
    `export default function (row) {
       if (row.n === 0) return {};
       if (row.n === 1) return { b: "one", a: null };
       if (row.n === 2) return { c: undefined, ["__proto__"]: 1 };
       return { a: Object.keys(row).join(","), b: row.x };
     }`,
  );
  await writeFile(path.join(testPlugins, "nodefault.mjs"), "export const columns = [];");
  await writeFile(path.join(testPlugins, "broken.mjs"), "export default function ( {");
  await writeFile(
    path.join(testPlugins, "busy.mjs"),
    "export default (row) => { const end = performance.now() + 1; while (performance.now() < end); return { n: row.n }; };",
  );
  await writeFile(
    path.join(testPlugins, "crash.mjs"),
    "export default (row) => { if (row.n === 3) process.exit(3); return { n: row.n }; };",
  );
  await writeFile(
    path.join(testPlugins, "slow.mjs"),
    "export default () => new Promise((resolve) => setTimeout(() => resolve({}), 60_000));",
  );
});

afterAll(async () => {
  await rm(testPlugins, { recursive: true, force: true });
});

const runners: TaskRunner[] = [];
afterEach(async () => {
  await Promise.all(runners.splice(0).map((r) => r.close()));
});

async function transform(module: string, extra: Record<string, unknown> = {}, dir = testPlugins) {
  const runner = await createTransformRunner(
    { logger: silentLogger() },
    transformOptionsSchema.parse({ module, ...extra }),
    { pluginDir: dir, threads: 2 },
  );
  runners.push(runner);
  return runner;
}

function rows(values: Array<Record<string, Cell>>): TaskRow[] {
  return values.map((v, k) => ({ index: 100 + k, values: v }));
}

const ctx = () => ({ signal: new AbortController().signal, logger: silentLogger() });

describe("transform", () => {
  it("runs the noop plugin: no columns, an empty result per row", async () => {
    const runner = await transform("noop", {}, repoPlugins);
    expect(runner.columns).toEqual([]);
    const out = await runner.runRows(rows([{ a: 1 }, { a: 2 }]), ctx());
    expect(out).toEqual([
      { i: 100, r: {} },
      { i: 101, r: {} },
    ]);
  });

  it("runs the score plugin with its rounds option, in batches, in input order", async () => {
    const runner = await transform("score", { options: { rounds: 3 }, batchSize: 4 }, repoPlugins);
    expect(runner.columns).toEqual(["score"]);
    const input = Array.from({ length: 10 }, (_, k) => ({ name: `row ${k}`, n: k }));
    let done = 0;
    const out = await runner.runRows(rows(input), { ...ctx(), onRowDone: (n) => (done += n) });
    const expected = (values: Record<string, Cell>) => {
      let d = createHash("sha256")
        .update(JSON.stringify(Object.values(values)))
        .digest();
      for (let n = 1; n < 3; n++) d = createHash("sha256").update(d).digest();
      return d.toString("hex").slice(0, 16);
    };
    expect(out.map((r) => r.i)).toEqual(input.map((_, k) => 100 + k));
    expect(out.map((r) => r.r?.score)).toEqual(input.map(expected));
    expect(done).toBe(10);
  });

  it("fails only the row whose plugin call throws, with a one-line error", async () => {
    const runner = await transform("picky", { batchSize: 2 });
    expect(runner.columns).toEqual(["double"]);
    const out = await runner.runRows(rows([{ n: 1 }, { n: 2 }, { n: 3 }]), ctx());
    expect(out).toEqual([
      { i: 100, r: { double: 2 } },
      { i: 101, e: "two is not allowed" },
      { i: 102, r: { double: 6 } },
    ]);
  });

  it("gives the plugin Dates and options, and encodes what it returns", async () => {
    const runner = await transform("dates", { options: { tag: "t" } });
    const [row] = await runner.runRows(rows([{ born: new Date("1999-12-31T00:00:00Z") }]), ctx());
    expect(row).toEqual({
      i: 100,
      r: {
        isDate: true,
        year: 1999,
        nextDay: { $date: "2000-01-01T00:00:00.000Z" },
        tag: "t",
        nested: '{"a":1}',
      },
    });
  });

  it("keeps each row's own result columns when rows return different ones", async () => {
    const runner = await transform("varying");
    const out = await runner.runRows(rows([{ n: 0 }, { n: 1 }, { n: 2 }, { n: 3, x: 5 }]), ctx());
    expect(out).toEqual([
      { i: 100, r: {} },
      { i: 101, r: { b: "one", a: null } },
      { i: 102, r: { c: null } },
      { i: 103, r: { a: "n,x", b: 5 } },
    ]);
  });

  it("takes rows' cells in the operation's header order when the rows carry them", async () => {
    const runner = await createTransformRunner(
      { logger: silentLogger() },
      transformOptionsSchema.parse({ module: "varying" }),
      { pluginDir: testPlugins, threads: 1, headers: ["n", "x", "y"] },
    );
    runners.push(runner);
    const born = new Date("2000-01-01T00:00:00Z");
    const out = await runner.runRows(
      [
        // `values` would say otherwise: with the headers known, `cells` are what travel.
        { index: 7, values: { n: 9 }, cells: [3, born, null] },
        // Rows without cells (or with too few) are read by header, missing ones null.
        { index: 8, values: { x: "x", n: 3 } },
      ],
      ctx(),
    );
    expect(out).toEqual([
      { i: 7, r: { a: "n,x,y", b: { $date: "2000-01-01T00:00:00.000Z" } } },
      { i: 8, r: { a: "n,x,y", b: "x" } },
    ]);
  });

  it("turns a thread's batch result into result rows, refusing one of the wrong length", () => {
    const result = { columns: ["a", "b"], rows: ["boom", null, [undefined, 2], [1]] };
    expect(resultRowsOf(result, [5, 6, 7, 8])).toEqual([
      { i: 5, e: "boom" },
      { i: 6, r: {} },
      { i: 7, r: { b: 2 } },
      { i: 8, r: { a: 1 } },
    ]);
    expect(() => resultRowsOf(result, [5])).toThrow("4 results for 1 rows");
  });

  it("fails a row whose plugin returns something other than an object", async () => {
    const runner = await transform("scalar");
    expect(await runner.runRows(rows([{}]), ctx())).toEqual([
      { i: 100, e: "plugin returned number, expected an object" },
    ]);
  });

  it("refuses a missing plugin at creation, naming the plugin and the directory", async () => {
    const err = await transform("nosuch").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ShardfleetError);
    expect((err as Error).message).toBe(
      `transform plugin "nosuch" not found in ${testPlugins} (looked for nosuch.mjs, nosuch.js)`,
    );
  });

  it("refuses a plugin without a default function or with a syntax error at creation", async () => {
    await expect(transform("nodefault")).rejects.toThrow(
      /plugin "nodefault" .* cannot be loaded: .*no default export function/,
    );
    await expect(transform("broken")).rejects.toThrow(/plugin "broken" .* cannot be loaded/);
  });

  it("rejects with the signal's reason when the shard is aborted", async () => {
    const runner = await transform("slow");
    const controller = new AbortController();
    const running = runner.runRows(rows([{}, {}]), {
      signal: controller.signal,
      logger: silentLogger(),
    });
    setTimeout(() => controller.abort(new Error("shard stopped")), 100);
    await expect(running).rejects.toThrow("shard stopped");
  });

  it("fails the whole call when a worker thread dies, instead of making up row errors", async () => {
    const runner = await transform("crash", { batchSize: 2 });
    const values = [1, 2, 3, 4, 5, 6].map((n) => ({ n }));
    const err = await runner.runRows(rows(values), ctx()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ShardfleetError);
    expect((err as ShardfleetError).code).toBe("TASK_FAILED");
    expect((err as Error).message).toMatch(/^transform thread failed: /);
    // The pool replaced the thread: rows that do not crash still run.
    expect(await runner.runRows(rows([{ n: 1 }]), ctx())).toEqual([{ i: 100, r: { n: 1 } }]);
  });

  it("reports finished rows through onResults as batches finish", async () => {
    const runner = await transform("picky", { batchSize: 2 });
    const seen: number[] = [];
    const out = await runner.runRows(rows([{ n: 1 }, { n: 2 }, { n: 3 }]), {
      ...ctx(),
      onResults: (done) => seen.push(...done.map((r) => r.i)),
    });
    expect(seen.sort()).toEqual([100, 101, 102]);
    expect(out.map((r) => r.i)).toEqual([100, 101, 102]);
  });

  it("runs batches in input order, a few at a time, so the finished rows form a growing prefix", async () => {
    const runner = await transform("busy", { batchSize: 5 });
    const values = Array.from({ length: 600 }, (_, n) => ({ n }));
    let reported = 0;
    let worst = 0;
    await runner.runRows(rows(values), {
      ...ctx(),
      onResults: (done) => {
        for (const r of done) worst = Math.max(worst, r.i - 100 - reported);
        reported += done.length;
      },
    });
    // At most 2 threads × 2 batches × 5 rows in flight: no row finishes further ahead than that.
    expect(worst).toBeLessThan(20);
  });

  it("is reachable through the registry", async () => {
    const runner = await createTaskRunner(
      { name: "transform", options: transformOptionsSchema.parse({ module: "noop" }) },
      { logger: silentLogger(), pluginDir: repoPlugins },
      { threads: 1 },
    );
    runners.push(runner);
    expect(await runner.runRows(rows([{ x: 1 }]), ctx())).toEqual([{ i: 100, r: {} }]);
  });
});
