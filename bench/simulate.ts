/**
 * Simulator speed: one million shards on up to 10,000 instances (the scale), today's
 * policy alone and then the full comparison, printing wall time, simulated events and peak
 * memory. Targets (issue 16): under 60 s on two cores and under 2 GB.
 *
 *   npm run bench:simulate            # 1,000,000 shards, 10,000 instances
 *   npm run bench:simulate -- 100000 1000
 */
import { compare } from "../src/sim/compare.ts";
import { simulate } from "../src/sim/engine.ts";
import { formatComparison } from "../src/sim/format.ts";
import { parseSimParams } from "../src/sim/params.ts";
import { SHARDFLEET } from "../src/sim/variants.ts";

const shards = Number(process.argv[2] ?? 1_000_000);
const maxInstances = Number(process.argv[3] ?? 10_000);
let peakRss = 0;
const sampler = setInterval(() => {
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
}, 100);
sampler.unref();
const mb = (b: number) => `${Math.round(b / 2 ** 20)} MB`;

function note(): void {
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
}

const params = parseSimParams({ shards, maxInstances });
let t0 = performance.now();
const one = simulate(params, SHARDFLEET);
note();
const oneS = (performance.now() - t0) / 1000;
console.log(
  `today's policy alone: ${shards.toLocaleString("en-US")} shards, up to ${maxInstances.toLocaleString("en-US")} instances: ` +
    `${oneS.toFixed(1)} s wall, ${one.events.toLocaleString("en-US")} events (${Math.round(one.events / oneS).toLocaleString("en-US")}/s), ` +
    `${one.planRounds.toLocaleString("en-US")} policy rounds, peak RSS ${mb(peakRss)} — target < 60 s, < 2 GB: ${oneS < 60 && peakRss < 2 * 2 ** 30 ? "met" : "NOT met"}`,
);

t0 = performance.now();
const all = compare({ shards, maxInstances }, undefined, (r) => {
  note();
  console.log(`  ${r.policy}: done at ${((performance.now() - t0) / 1000).toFixed(1)} s`);
});
const allS = (performance.now() - t0) / 1000;
note();
console.log(
  `full comparison (${all.results.length} policies): ${allS.toFixed(1)} s wall, peak RSS ${mb(peakRss)}\n`,
);
process.stdout.write(formatComparison(all));
