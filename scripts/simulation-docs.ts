/**
 * Writes docs/simulation.md and its SVG charts (docs/simulation/*.svg) from simulator runs:
 * the 1M-shard headline (the issue's goal figures, every interruption band), the standard
 * comparison, and sweeps of interruption band, shard size, checkpoint interval and launch
 * concurrency. Every figure in the page comes from a run made by this script.
 *
 *   node --import tsx scripts/simulation-docs.ts            # about 10 minutes on two cores
 *   node --import tsx scripts/simulation-docs.ts --quick    # headline at 100k shards instead
 */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { lineChartSvg, type Series } from "../src/sim/chart.ts";
import { type Comparison, compare } from "../src/sim/compare.ts";
import { type SimResult, simulate } from "../src/sim/engine.ts";
import {
  bandNames,
  interruptionRate,
  parseSimParams,
  type SimParamsInput,
} from "../src/sim/params.ts";
import { quotaReport } from "../src/sim/quotas.ts";
import { ALL_ON_DEMAND, BASELINES, SHARDFLEET, type Variant } from "../src/sim/variants.ts";

const quick = process.argv.includes("--quick");
const root = path.resolve(import.meta.dirname, "..");
const out = path.join(root, "docs");
const charts = path.join(out, "simulation");
const log = (s: string) => process.stderr.write(`${s}\n`);
const baseline = (name: string): Variant => BASELINES.find((v) => v.name === name)!;
const NO_CK = baseline("spot-no-checkpoints");

const f3 = (x: number) => x.toFixed(3);
const usd = (x: number) => `$${x.toFixed(2)}`;
const hours = (s: number) => `${(s / 3600).toFixed(2)} h`;
const int = (x: number) => Math.round(x).toLocaleString("en-US");

function table(head: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.join(" | ")} |`;
  return [line(head), line(head.map(() => "---")), ...rows.map(line)].join("\n");
}

function run(input: SimParamsInput, v: Variant): SimResult {
  const t0 = performance.now();
  const r = simulate(parseSimParams(input), v);
  log(`  ${v.name} ${JSON.stringify(input)}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return r;
}

async function chart(file: string, svg: string): Promise<string> {
  await writeFile(path.join(charts, file), svg);
  return `![${file}](simulation/${file})`;
}

async function main(): Promise<void> {
  await mkdir(charts, { recursive: true });
  const md: string[] = [];

  // ---- Headline: the issue's goal at scale --------------------------------------------------
  const big: SimParamsInput = quick
    ? { shards: 100_000, maxInstances: 1_000 }
    : { shards: 1_000_000, maxInstances: 10_000 };
  log(`headline: ${big.shards} shards, ${big.maxInstances} instances`);
  const od = run(big, ALL_ON_DEMAND);
  const perBand = [];
  for (const band of bandNames) {
    const sf = run({ ...big, band }, SHARDFLEET);
    const noCk = run({ ...big, band }, NO_CK);
    perBand.push({ band, sf, noCk });
  }
  const at510 = perBand.find((b) => b.band === "5-10")!;
  const costRatio = at510.sf.costUsd / od.costUsd;
  const makespanRatio = at510.sf.makespanS / od.makespanS;
  const cheaperEverywhere = perBand.every((b) => b.sf.costUsd < b.noCk.costUsd);
  const p0 = parseSimParams(big);

  // ---- Standard comparison (every baseline) at a size that runs in seconds -------------------
  const mid: SimParamsInput = { shards: 100_000, maxInstances: 1_000 };
  log("standard comparison");
  const std: Comparison = compare(mid);

  // ---- Sweeps -------------------------------------------------------------------------------
  const sweep: SimParamsInput = { shards: 20_000, maxInstances: 500 };
  log("band sweep");
  const bandRuns = bandNames.map((band) => ({ band, c: compare({ ...sweep, band }) }));
  const STRESS = 1000;
  const stressRuns = bandNames.map((band) => ({
    band,
    c: compare({ ...sweep, band, rateScale: STRESS }),
  }));

  log("shard size sweep");
  const totalRows = 20_000 * 200;
  const sizes = [50, 100, 200, 500, 1000, 2000];
  const sizeRuns = sizes.map((rows) => ({
    rows,
    c: compare({ ...sweep, shards: totalRows / rows, rowsPerShard: rows }, [
      SHARDFLEET,
      NO_CK,
      ALL_ON_DEMAND,
    ]),
  }));

  log("checkpoint interval sweep");
  const intervals = [5, 15, 60, 120, 300];
  const harsh: SimParamsInput = { ...sweep, band: ">20", noticeFraction: 0, rateScale: 300 };
  const ckOd = run(harsh, ALL_ON_DEMAND);
  const ckRuns = intervals.map((s) => ({
    s,
    r: run({ ...harsh, checkpointEverySeconds: s, checkpointEveryRows: 1_000_000 }, SHARDFLEET),
  }));
  const ckNone = run(harsh, NO_CK);

  log("launch concurrency sweep");
  const launchSweep: SimParamsInput = { shards: 100_000, maxInstances: 2_000 };
  const lcOd = run(launchSweep, ALL_ON_DEMAND);
  const lcRuns = [1, 2, 5, 10, 20].map((k) => ({
    k,
    r: run({ ...launchSweep, launchConcurrency: k }, SHARDFLEET),
  }));

  // ---- The page -----------------------------------------------------------------------------
  md.push(
    "# Fleet simulation",
    "",
    "<!-- Generated by `node --import tsx scripts/simulation-docs.ts`; edit the script, not this page. -->",
    "",
    "`shardfleet simulate` runs one operation in a discrete-event simulation whose fleet is steered by the",
    "**live** fleet policy (`planFleet`, `recordLaunchOutcome`, `withSpotSignal` in",
    "`src/scheduler/fleet/`) and billed by the **live** cost code (`billInstance`, `attributeInstance`,",
    "`shardWaste` in `src/scheduler/cost/`). Only the world is modelled (`src/sim/`): CreateFleet latency,",
    "boot, pools with spot capacity and outages, spot prices that move hourly, interruptions per Spot",
    "Instance Advisor band with or without the two-minute notice, shard times (log-normal, a few slow",
    "shards and noisy hosts), the checkpoint rule (every N rows or T seconds) and SQS delivery (a released",
    "message is visible at once, a dead worker's after the visibility timeout).",
    "",
    "Every policy of a run sees the same world from the same seed: the same shards, the same pool outages",
    "and the same price path. Baselines are the live policy with other options or a world that withholds",
    "something (a market, in-shard checkpoints), never other code.",
    "",
    "## Interruption rates (stated)",
    "",
    `Spot Advisor bands are monthly. A run lasts hours, so the rate is scaled: ${interruptionRate(p0).statement}.`,
    "Every output of `shardfleet simulate` prints this line. `--rate-scale 1` gives the unscaled monthly rate.",
    "",
    "## Goal figures (issue 16)",
    "",
    `${int(p0.shards)} shards × ${p0.rowsPerShard} rows (${p0.rowMs} ms a row), up to ${int(p0.maxInstances)} instances × ${p0.shardsPerInstance} shards, spot at ${p0.spotRatio}× on-demand, seed ${p0.seed}.`,
    "",
    table(
      ["goal", "figure", "met"],
      [
        [
          "cost ≤ 0.40 × all-on-demand (5–10 % band)",
          f3(costRatio),
          costRatio <= 0.4 ? "yes" : "**no**",
        ],
        [
          "makespan ≤ 1.10 × all-on-demand (5–10 % band)",
          f3(makespanRatio),
          makespanRatio <= 1.1 ? "yes" : "**no**",
        ],
        [
          "cheaper than spot-no-checkpoints at every band",
          perBand.map((b) => (b.sf.costUsd / b.noCk.costUsd).toFixed(4)).join(" / "),
          cheaperEverywhere ? "yes" : "**no**",
        ],
      ],
    ),
    "",
    table(
      [
        "band",
        "shardfleet cost",
        "×OD",
        "makespan",
        "×OD",
        "reclaims",
        "wasted rows",
        "no-checkpoints cost",
        "its wasted rows",
      ],
      perBand.map((b) => [
        b.band,
        usd(b.sf.costUsd),
        f3(b.sf.costUsd / od.costUsd),
        hours(b.sf.makespanS),
        f3(b.sf.makespanS / od.makespanS),
        int(b.sf.reclaims),
        int(b.sf.wastedRows),
        usd(b.noCk.costUsd),
        int(b.noCk.wastedRows),
      ]),
    ),
    "",
    `All-on-demand: ${usd(od.costUsd)}, ${hours(od.makespanS)}. Today's policy reaches its ${int(p0.maxInstances)} instances after ` +
      `${(at510.sf.rampS / 60).toFixed(1)} min (${int(at510.sf.createFleetCalls)} CreateFleet calls of 5–6, up to ${p0.launchConcurrency} at once: ` +
      "`SHARDFLEET_LAUNCH_CONCURRENCY`'s default); " +
      `all-on-demand after ${(od.rampS / 60).toFixed(1)} min (one call).`,
    "",
  );

  md.push(
    "## Every baseline",
    "",
    `${int(std.params.shards)} shards, up to ${int(std.params.maxInstances)} instances, band ${std.params.band}, seed ${std.params.seed}.`,
    "",
    table(
      [
        "policy",
        "cost",
        "×OD",
        "makespan",
        "×OD",
        "wasted rows",
        "idle $",
        "reclaims",
        "fallback instances",
        "straggler copies",
      ],
      Object.entries(std.policies).map(([name, f]) => [
        name,
        usd(f.cost_usd),
        f3(f.cost_ratio_vs_on_demand),
        hours(f.makespan_s),
        f3(f.makespan_ratio_vs_on_demand),
        int(f.wasted_rows),
        usd(f.idle_usd),
        f.reclaims,
        f.fallback_instances,
        f.straggler_copies,
      ]),
    ),
    "",
    ...Object.entries(std.policies).map(([name, f]) => `- **${name}**: ${f.description}`),
    "",
    "Quotas for today's policy at that size:",
    "",
    table(
      ["limit", "peak", "limit value", "ok", "note"],
      std.quotas.map((q) => [q.limit, int(q.value), int(q.max), q.ok ? "yes" : "**no**", q.note]),
    ),
    "",
  );

  const ratioSeries = (
    runs: { c: Comparison }[],
    names: string[],
    key: "cost_ratio_vs_on_demand" | "makespan_ratio_vs_on_demand",
  ): Series[] =>
    names.map((name) => ({
      name,
      values: runs.map((r) => r.c.policies[name]?.[key] ?? Number.NaN),
    }));
  const bandNamesShown = ["shardfleet", "spot-no-fallback", "spot-no-checkpoints", "no-stragglers"];
  md.push(
    "## Cost and makespan against the interruption band",
    "",
    `${int(20_000)} shards, up to 500 instances, each band's midpoint scaled ×${parseSimParams(sweep).rateScale}.`,
    "",
    await chart(
      "cost-by-band.svg",
      lineChartSvg({
        title: "Cost vs all-on-demand by interruption band",
        xLabel: "Spot Advisor band (% per month)",
        yLabel: "cost ÷ all-on-demand",
        x: bandNames,
        series: ratioSeries(bandRuns, bandNamesShown, "cost_ratio_vs_on_demand"),
        reference: { y: 1, label: "all-on-demand" },
      }),
    ),
    "",
    await chart(
      "makespan-by-band.svg",
      lineChartSvg({
        title: "Makespan vs all-on-demand by interruption band",
        xLabel: "Spot Advisor band (% per month)",
        yLabel: "makespan ÷ all-on-demand",
        x: bandNames,
        series: ratioSeries(bandRuns, bandNamesShown, "makespan_ratio_vs_on_demand"),
        reference: { y: 1, label: "all-on-demand" },
      }),
    ),
    "",
    table(
      ["band", ...bandNamesShown.map((n) => `${n} cost ×OD / makespan ×OD`)],
      bandRuns.map((b) => [
        b.band,
        ...bandNamesShown.map((n) => {
          const f = b.c.policies[n]!;
          return `${f3(f.cost_ratio_vs_on_demand)} / ${f3(f.makespan_ratio_vs_on_demand)}`;
        }),
      ]),
    ),
    "",
  );

  md.push(
    `### The same at ×${STRESS} (stress)`,
    "",
    `Rates ten times higher again (${interruptionRate(parseSimParams({ ...sweep, band: "5-10", rateScale: STRESS })).statement.split("→ ")[1]} at 5–10).`,
    "",
    await chart(
      "cost-by-band-stress.svg",
      lineChartSvg({
        title: `Cost vs all-on-demand by band, rates ×${STRESS}`,
        xLabel: "Spot Advisor band (% per month)",
        yLabel: "cost ÷ all-on-demand",
        x: bandNames,
        series: ratioSeries(stressRuns, bandNamesShown, "cost_ratio_vs_on_demand"),
        reference: { y: 1, label: "all-on-demand" },
      }),
    ),
    "",
    await chart(
      "makespan-by-band-stress.svg",
      lineChartSvg({
        title: `Makespan vs all-on-demand by band, rates ×${STRESS}`,
        xLabel: "Spot Advisor band (% per month)",
        yLabel: "makespan ÷ all-on-demand",
        x: bandNames,
        series: ratioSeries(stressRuns, bandNamesShown, "makespan_ratio_vs_on_demand"),
        reference: { y: 1, label: "all-on-demand" },
      }),
    ),
    "",
    table(
      [
        "band",
        "reclaims",
        ...bandNamesShown.map((n) => `${n} cost ×OD / makespan ×OD`),
        "wasted rows (shardfleet / no-checkpoints)",
      ],
      stressRuns.map((b) => [
        b.band,
        b.c.policies.shardfleet!.reclaims,
        ...bandNamesShown.map((n) => {
          const f = b.c.policies[n]!;
          return `${f3(f.cost_ratio_vs_on_demand)} / ${f3(f.makespan_ratio_vs_on_demand)}`;
        }),
        `${int(b.c.policies.shardfleet!.wasted_rows)} / ${int(b.c.policies["spot-no-checkpoints"]!.wasted_rows)}`,
      ]),
    ),
    "",
  );

  md.push(
    "## Shard size",
    "",
    `The same ${int(totalRows)} rows cut into shards of 50 to 2,000 rows; band 5–10.`,
    "",
    await chart(
      "by-shard-size.svg",
      lineChartSvg({
        title: "Cost and makespan vs all-on-demand by shard size",
        xLabel: "rows per shard",
        yLabel: "ratio to all-on-demand",
        x: sizes.map(String),
        series: [
          ...ratioSeries(
            sizeRuns,
            ["shardfleet", "spot-no-checkpoints"],
            "cost_ratio_vs_on_demand",
          ).map((s) => ({ ...s, name: `${s.name} cost` })),
          ...ratioSeries(
            sizeRuns,
            ["shardfleet", "spot-no-checkpoints"],
            "makespan_ratio_vs_on_demand",
          ).map((s) => ({ ...s, name: `${s.name} makespan` })),
        ],
        reference: { y: 1, label: "all-on-demand" },
      }),
    ),
    "",
    table(
      [
        "rows per shard",
        "shards",
        "shardfleet cost ×OD",
        "makespan ×OD",
        "wasted rows",
        "no-checkpoints cost ×OD",
        "its wasted rows",
      ],
      sizeRuns.map(({ rows, c }) => {
        const sf = c.policies.shardfleet!;
        const nc = c.policies["spot-no-checkpoints"]!;
        return [
          rows,
          int(totalRows / rows),
          f3(sf.cost_ratio_vs_on_demand),
          f3(sf.makespan_ratio_vs_on_demand),
          int(sf.wasted_rows),
          f3(nc.cost_ratio_vs_on_demand),
          int(nc.wasted_rows),
        ];
      }),
    ),
    "",
  );

  const hp = parseSimParams(harsh);
  md.push(
    "## Checkpoint interval",
    "",
    `A harsh world to make lost work visible: band ${hp.band} scaled ×${hp.rateScale} (${interruptionRate(hp).statement.split("→ ")[1]}), ` +
      "and **no** interruption gives a notice (every reclaim loses the work since the last checkpoint). Checkpoints by time only.",
    "",
    await chart(
      "by-checkpoint-interval.svg",
      lineChartSvg({
        title: "Rows redone by checkpoint interval (no notices)",
        xLabel: "checkpoint every … seconds",
        yLabel: "rows redone",
        x: [...intervals.map(String), "none"],
        series: [
          { name: "shardfleet", values: [...ckRuns.map((c) => c.r.wastedRows), ckNone.wastedRows] },
        ],
      }),
    ),
    "",
    table(
      ["checkpoint every", "cost ×OD", "makespan ×OD", "rows redone", "wasted $", "reclaims"],
      [
        ...ckRuns.map(({ s, r }) => [
          `${s} s`,
          f3(r.costUsd / ckOd.costUsd),
          f3(r.makespanS / ckOd.makespanS),
          int(r.wastedRows),
          usd(r.wastedUsd),
          r.reclaims,
        ]),
        [
          "never (spot-no-checkpoints)",
          f3(ckNone.costUsd / ckOd.costUsd),
          f3(ckNone.makespanS / ckOd.makespanS),
          int(ckNone.wastedRows),
          usd(ckNone.wastedUsd),
          ckNone.reclaims,
        ],
      ],
    ),
    "",
  );

  md.push(
    "## Launch concurrency",
    "",
    "The live fleet manager carries up to `SHARDFLEET_LAUNCH_CONCURRENCY` launch calls of a plan out at once",
    `(default ${p0.launchConcurrency}); the simulator takes the same option. Spot comes in batches of five or six, so ${int(2_000)} instances`,
    `take about ${Math.ceil(2000 / 6)} calls. The world's CreateFleet latency is ${p0.createFleetLatencyMs} ms (an assumption); EC2 throttles`,
    "CreateFleet per account, so more calls at once is not free (see the quota table).",
    "",
    await chart(
      "by-launch-concurrency.svg",
      lineChartSvg({
        title: "Makespan vs all-on-demand by CreateFleet calls at once",
        xLabel: "SHARDFLEET_LAUNCH_CONCURRENCY",
        yLabel: "makespan ÷ all-on-demand",
        x: lcRuns.map((l) => String(l.k)),
        series: [{ name: "shardfleet", values: lcRuns.map((l) => l.r.makespanS / lcOd.makespanS) }],
        reference: { y: 1, label: "all-on-demand" },
      }),
    ),
    "",
    table(
      ["calls at once", "ramp to full fleet", "makespan ×OD", "cost ×OD"],
      lcRuns.map(({ k, r }) => [
        k,
        `${(r.rampS / 60).toFixed(1)} min`,
        f3(r.makespanS / lcOd.makespanS),
        f3(r.costUsd / lcOd.costUsd),
      ]),
    ),
    "",
  );

  md.push(
    findings({
      costRatio,
      makespanRatio,
      concurrency: p0.launchConcurrency,
      rampMin: at510.sf.rampS / 60,
      calls: at510.sf.createFleetCalls,
      shards: p0.shards,
      instances: p0.maxInstances,
      noCkCost: at510.noCk.costUsd / at510.sf.costUsd,
      wasted: at510.sf.wastedRows,
      noCkWasted: at510.noCk.wastedRows,
      stragglerGaps: [
        ...bandRuns.map((b) => ({ ...b, scale: 100 })),
        ...stressRuns.map((b) => ({ ...b, scale: STRESS })),
      ].map(({ band, scale, c }) => ({
        band,
        scale,
        with: c.policies.shardfleet!.makespan_ratio_vs_on_demand,
        without: c.policies["no-stragglers"]!.makespan_ratio_vs_on_demand,
      })),
      stdShardfleet: std.policies.shardfleet!.makespan_ratio_vs_on_demand,
      stdNoStragglers: std.policies["no-stragglers"]!.makespan_ratio_vs_on_demand,
      quotas: quotaReport(at510.sf, p0),
      onePolicyMakespan: std.policies["one-instance"]!.makespan_ratio_vs_on_demand,
      onePolicyCost: std.policies["one-instance"]!.cost_ratio_vs_on_demand,
    }),
  );
  await writeFile(path.join(out, "simulation.md"), `${md.join("\n")}\n`);
  log(`wrote ${path.relative(root, path.join(out, "simulation.md"))}`);
}

/**
 * What the figures say. The reading was written after looking at the tables above; the numbers
 * in it come from this run, so a regenerated page stays true to its own tables.
 */
function findings(x: {
  costRatio: number;
  makespanRatio: number;
  concurrency: number;
  rampMin: number;
  calls: number;
  shards: number;
  instances: number;
  noCkCost: number;
  wasted: number;
  noCkWasted: number;
  /** Makespan ratio with and without the straggler policy in every band-sweep run. */
  stragglerGaps: { band: string; scale: number; with: number; without: number }[];
  stdShardfleet: number;
  stdNoStragglers: number;
  quotas: Comparison["quotas"];
  onePolicyMakespan: number;
  onePolicyCost: number;
}): string {
  const gaps = x.stragglerGaps.filter((g) => g.without - g.with > 0.0005);
  const worst = [...gaps].sort((a, b) => b.without - b.with - (a.without - a.with))[0];
  return [
    "## What the results say about today's policies",
    "",
    `- **Cost ${x.costRatio <= 0.4 ? "is met" : "is **not met**"}, makespan ${x.makespanRatio <= 1.1 ? "is met" : "is **not met**"}; what is left of the gap is the launch ramp.** ` +
      `At ${int(x.shards)} shards the cost ratio is ${f3(x.costRatio)} ` +
      `(goal ≤ 0.40) and the makespan ratio ${f3(x.makespanRatio)} (goal ≤ 1.10${x.makespanRatio <= 1.1 ? ", met" : ", **not met**"}). ` +
      `Spot is requested in batches of five or six and the fleet manager carries up to ${x.concurrency} launch calls out at once, so ` +
      `${int(x.instances)} instances take ${int(x.calls)} CreateFleet calls and ${x.rampMin.toFixed(1)} min; all-on-demand asks once. ` +
      "Raising `SHARDFLEET_LAUNCH_CONCURRENCY` shortens the ramp (launch concurrency table) but is " +
      "bounded by the account's EC2 API rate (the limit used here is an assumption).",
    `- **In-shard checkpoints cut redone rows, not (yet) money.** At the 5–10 band: ${int(x.wasted)} rows redone with checkpoints against ` +
      `${int(x.noCkWasted)} without; spot-no-checkpoints costs ${f3(x.noCkCost)}× today's policy. With two-minute shards and most reclaims ` +
      "announced (the notice drains a checkpoint either way), a reclaim loses little; the gap grows with shard length, with reclaims " +
      "without notice and with the rate (shard size and checkpoint tables). Checkpoints are what makes long shards affordable on spot.",
    `- **Stragglers help in some runs, not in most.** In the standard comparison (band 5–10) the makespan ratio is ` +
      `${f3(x.stdShardfleet)} with the straggler policy and ${f3(x.stdNoStragglers)} without: the last shards are mostly ` +
      `slow-data shards, which a copy cannot speed up. Across the ${x.stragglerGaps.length} band-sweep runs (×100 and ×1000) the two ` +
      `differ in ${gaps.length}` +
      (worst
        ? `; the largest gap is band ${worst.band} at ×${worst.scale}: ${f3(worst.without)} without against ${f3(worst.with)} with, ` +
          "for well under 1 % more cost (on-demand straggler capacity): shards reclaimed twice are copied to on-demand and finish there."
        : "."),
    "- **The on-demand fallback rarely fires with nine pools.** Pool outages (0.2 per pool-hour, 20 min) seldom take every pool at once, " +
      "so shardfleet and spot-no-fallback cost the same here; when spot has no capacity at all the fallback is what finishes the " +
      "operation (unit test: spot-no-fallback fails at the capacity deadline).",
    "- **A lost spot instance's replacement is not batched at scale — and not early either.** At this scale the fleet sits at " +
      "`maxInstances`. An instance warned of an interruption stops counting as capacity, so the policy wants a replacement at once, " +
      "but it still counts against the instance cap (it is live and billed), so no room is left: the replacement waits for the " +
      "reclaim, then goes out as a single-instance request (batches round up to five only when the caps allow). The two-minute " +
      "notice is not used. Letting a warned instance leave the cap's count (it is gone within two minutes) would replace it during " +
      "the notice; below the cap, rounding a single replacement up to five launches four instances that idle until the idle timeout " +
      "unless work frees up. Both are candidates for an issue; the simulator can measure either once the policy has the option.",
    `- **One instance per operation** costs ${f3(x.onePolicyCost)}× all-on-demand (no spot, no idle) but takes ${f3(x.onePolicyMakespan)}× as long.`,
    `- **Quotas** at the headline scale: ${
      x.quotas
        // The batch size is at its limit by design (the splitter fills every call).
        .filter(
          (q) => !q.ok || (q.value > 0.8 * q.max && !q.limit.startsWith("SQS SendMessageBatch")),
        )
        .map((q) => `${q.limit} ${int(q.value)} of ${int(q.max)}`)
        .join("; ") || "every limit is comfortably clear"
    } (limits near or over; the spot vCPU quota is a ` +
      "parameter, 5,000 by default; S3 PUTs count checkpoints, chunks, attempts and done markers under the operation's shard prefixes).",
    "- **A deadline-aware policy** (move remaining work to on-demand when the deadline would slip) was not built: at the 5–10 band the " +
      "makespan gap is the launch ramp, which no switch to on-demand fixes; under stress the straggler policy already recovers most of it.",
    "",
    "## Credibility",
    "",
    "`test/e2e/sim-credibility.test.ts` runs 40 shards on up to 6 local instances with the local spot market reclaiming one spot",
    "instance per instance-minute (half with a six-second notice, half killed), fits the row time and boot time from that run's",
    "attempt records, and simulates the same case over 100 seeds. The local run is one draw of a random process, so it must lie",
    "within the simulated 5th–95th percentile band widened by 25 %, for makespan (first launch → last commit) and for cost (each",
    "instance bills at least 60 s, so in a one-minute run one reclaim more or less moves the bill by a sixth or more). An earlier",
    "version compared the one draw against the simulated mean (±35 % makespan, ±50 % cost) and failed once in CI: a run whose",
    "reclaims came early billed $0.0040 against a simulated mean of $0.0064, the simulator's own 5th percentile. Observed in three",
    "runs on a loaded machine: local cost $0.0040–0.0067 against bands of about $0.0026–0.0082; local makespan 34–45 s against",
    "bands of about 27–57 s (simulated means 37–42 s). At load average 30 (boots of 13–34 s) the simulator's cost",
    "mean ran twice the local bill ($0.0114 against $0.0050): it overestimates cost when boots are slow and spread.",
    "",
    "## Limits of the model",
    "",
    "- Interruptions are a constant hazard per instance (no correlated waves across a pool); pool outages only refuse launches.",
    "- CreateFleet latency (1 s), the CreateFleet rate limit and boot (25–60 s) are assumptions; the local run fits its own.",
    "- Splitting and merging are not simulated: makespan runs from the first plan to the last commit.",
    "- The policy sees a uniform sample of 2,001 committed shard durations (it only takes their median).",
    "- Rows of a shard finish at a steady pace; checkpoints follow the rows-or-seconds rule without the write-time floor.",
  ].join("\n");
}

await main();
