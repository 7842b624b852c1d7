/** `shardfleet simulate` as a user meets it: the table, the `--json` object, and bad flags. */
import { describe, expect, it } from "vitest";
import { CLI, runNode } from "../support/local-cli.ts";

const run = (args: string[]) => runNode([...CLI, ...args], { timeoutMs: 60_000 });

const small = ["--shards", "300", "--rows-per-shard", "50", "--max-instances", "20", "--seed", "3"];

/** One JSON run, twice in a test: the same seed must give the same figures. */
const jsonRun = ["simulate", ...small, "--band", "10-15", "--spot-ratio", "0.35", "--json"];

describe("shardfleet simulate", () => {
  it("prints one JSON object with the figures per policy", async () => {
    const r = await run(jsonRun);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.params).toMatchObject({
      shards: 300,
      rowsPerShard: 50,
      maxInstances: 20,
      band: "10-15",
      spotRatio: 0.35,
      seed: 3,
    });
    expect(out.interruptions).toMatch(/band 10-15 % per month .* scaled ×100/);
    expect(Object.keys(out.policies)).toEqual([
      "shardfleet",
      "all-on-demand",
      "spot-no-fallback",
      "spot-no-checkpoints",
      "no-stragglers",
      "one-instance",
    ]);
    for (const f of Object.values(out.policies) as Record<string, unknown>[]) {
      for (const key of [
        "cost_usd",
        "makespan_s",
        "cost_ratio_vs_on_demand",
        "makespan_ratio_vs_on_demand",
        "wasted_rows",
      ]) {
        expect(typeof f[key]).toBe("number");
      }
    }
    expect(out.policies["all-on-demand"].cost_ratio_vs_on_demand).toBe(1);
    expect(out.policies.shardfleet.cost_ratio_vs_on_demand).toBeLessThan(0.6);
    expect(out.goal).toHaveLength(3);
    expect(out.quotas.map((q: { limit: string }) => q.limit)).toContain(
      "EC2 spot vCPUs (account quota)",
    );

    // Same seed, same figures.
    const again = await run(jsonRun);
    expect(JSON.parse(again.stdout).policies.shardfleet.cost_usd).toBe(
      out.policies.shardfleet.cost_usd,
    );
  });

  it("prints a table with the stated interruption scaling", async () => {
    const r = await run(["simulate", ...small]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/interruptions: band 5-10 % per month/);
    expect(r.stdout).toMatch(/^shardfleet\s+\$\d/m);
    expect(r.stdout).toMatch(/goal:/);
    expect(r.stdout).toMatch(/quotas \(shardfleet\):/);
  });

  it("refuses a bad flag in one line (exit 64)", async () => {
    const band = await run(["simulate", "--band", "3-4"]);
    expect(band.code).toBe(64);
    expect(band.stderr.trim()).toBe(
      "shardfleet: --band must be one of <5, 5-10, 10-15, 15-20, >20",
    );
    const ratio = await run(["simulate", "--spot-ratio", "2"]);
    expect(ratio.code).toBe(64);
    expect(ratio.stderr).toMatch(/--spot-ratio must be in \(0, 1\]/);
    expect(ratio.stderr).not.toMatch(/\n\s+at /);
  });
});
