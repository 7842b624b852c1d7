/**
 * The EventBridge spot signal end to end, across processes over real SQS: the local stack in
 * fleet mode reclaims a busy spot instance WITH a notice, which it publishes twice, as AWS does —
 * on the instance's metadata endpoint (its worker drains) and as an "EC2 Spot Instance
 * Interruption Warning" event on the spot events queue. The scheduler's consumer hands it to the
 * fleet manager, which records a `spot-interruption-warning` fleet event, stops counting the
 * warned instance as capacity and launches its replacement while the warned one still runs.
 *
 * Timing: rows are slowed by a transform plugin so the warned worker's shards are far from done;
 * its drain grace (SHARDFLEET_DRAIN_GRACE_S) keeps it working for a few seconds after the notice
 * — the window in which only the EventBridge path can trigger an early replacement (the loss
 * itself is not observed before the worker exits) — and is shorter than the scaled notice lead,
 * so the worker exits by itself (final checkpoints, messages released) rather than being killed.
 */
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitForOperation } from "../../src/cli/wait.ts";
import { type LocalStack, SPOT_NOTICE_MS } from "../../src/local/stack.ts";
import { FLEET_TAGS } from "../../src/shared/capacity.ts";
import { keys } from "../../src/shared/keys.ts";
import { type FleetRecord, fleetRecordSchema } from "../../src/shared/schemas/fleet.ts";
import {
  downloadRows,
  fleetEnded,
  startTestStack,
  type TestStack,
  withStackStore,
} from "../support/local-stack.ts";
import { PACED_DOUBLE_PLUGIN, writeNumbersCsv } from "../support/plugins.ts";
import { waitFor } from "../support/wait.ts";

const ROWS = 32;
const SHARD = 16; // 2 shards: with 2 shards in flight per worker, ONE instance serves them all
const ROW_MS = 400; // ~6.4 s of work on one worker (2 transform threads): far from done at the notice
const TIME_FACTOR = 0.06; // the two-minute notice lead lasts 7.2 s
const DRAIN_GRACE_S = 4; // < the lead: the warned worker drains and exits by itself

describe("EventBridge spot interruption warning on the local stack (fleet mode)", () => {
  let env: TestStack;

  beforeAll(async () => {
    env = await startTestStack("spot-events", {
      plugins: { "slow.mjs": PACED_DOUBLE_PLUGIN },
      capacity: "fleet",
      // The warned instance still counts against the cap (it is live and billed): room for it
      // and its replacement, and no more.
      maxInstances: 2,
      timeFactor: TIME_FACTOR,
      // Only a safety net: a worker killed mid-drain would hold its shards this long.
      visibilityTimeoutSeconds: 10,
      settings: {
        SHARDFLEET_SHARDS_IN_FLIGHT: "2",
        SHARDFLEET_DRAIN_GRACE_S: String(DRAIN_GRACE_S),
      },
    });
  }, 60_000);

  afterAll(async () => {
    await env?.close();
  }, 60_000);

  it("records the warning, replaces the warned instance before it is gone, keeps every row once", async () => {
    const { dir, stack, client } = env;
    expect(SPOT_NOTICE_MS * TIME_FACTOR).toBeGreaterThan(DRAIN_GRACE_S * 1000);
    const input = path.join(dir, "numbers.csv");
    await writeNumbersCsv(input, ROWS);
    const { id } = await client.submit(input, {
      task: {
        name: "transform",
        options: { module: "slow", batchSize: 1, options: { rowMs: ROW_MS } },
      },
      shardSize: SHARD,
      // The row checks below compare the input column as text, as CSV cells were before typing.
      csvValues: "text",
      checkpoint: { everyRows: 2, everySeconds: 0.5 },
    });

    // The fleet manager launches one spot instance for the two shards; once it runs one,
    // it is reclaimed with a notice.
    await waitFor(
      "a shard running",
      async () => {
        const view = await client.get(id);
        return view.shards.running > 0 ? true : undefined;
      },
      30_000,
    );
    expect(stack.instances).toHaveLength(1);
    const victim = stack.instances[0]!;
    expect(victim.market).toBe("spot");
    expect(victim.state).toBe("running");
    let victimGoneAt: number | undefined;
    void victim.process.exited.then(() => {
      victimGoneAt = Date.now();
    });
    victim.reclaim(true);

    const done = await waitForOperation(client, id, { progress: false, intervalMs: 250 });
    expect(done.status).toBe("succeeded");
    expect(done.rows).toEqual({ total: ROWS, done: ROWS, failed: 0 });

    // (c) Every row exactly once, in order, with its result.
    const rows = await downloadRows(client, id);
    expect(rows[0]).toEqual(["n", "double", "error"]);
    expect(rows.slice(1).map((r) => [r[0], r[1]])).toEqual(
      Array.from({ length: ROWS }, (_, n) => [String(n), n * 2]),
    );

    // (d) Every instance ends: the operation is over, so the fleet scales in at once.
    const final = await fleetEnded(stack, client, id, 30_000);
    expect(stack.liveInstances()).toEqual([]);
    expect(victim.state).toBe("gone"); // it exited (drained), not stopped by the fleet manager

    // (a) The warning came through EventBridge → SQS → the scheduler, for that instance.
    const events = final.events ?? [];
    const warningAt = events.findIndex(
      (e) => e.kind === "spot-interruption-warning" && e.message.includes(victim.name),
    );
    expect(warningAt, JSON.stringify(events, null, 1)).toBeGreaterThanOrEqual(0);
    expect(events[warningAt]!.message).toMatch(
      new RegExp(`^spot interruption warning for ${victim.name} \\(EventBridge\\)`),
    );
    expect(events.filter((e) => e.kind === "spot-interruption-warning")).toHaveLength(1);

    // (b) The replacement: requested after the warning, sized with the warned instance excluded
    // from capacity. "(+1 warned of an interruption)" is only written while the fleet manager
    // still sees the warned instance live (policy.ts planLaunches), so this launch is the
    // EventBridge path's doing, not a reaction to the loss, and there was work left to do.
    const replacementLaunch = events.findIndex(
      (e, k) =>
        k > warningAt &&
        e.kind === "launch-requested" &&
        e.message.includes("(+1 warned of an interruption)"),
    );
    expect(replacementLaunch, JSON.stringify(events, null, 1)).toBeGreaterThan(warningAt);
    expect(events[replacementLaunch]!.message).toMatch(
      /^requested 1 spot worker instance\(s\) in .*: spot: backlog [12] shards → 1 instance\(s\), 0 live \(\+1 warned of an interruption\)$/,
    );
    // The loss of the warned instance was observed only after that launch.
    const lost = events.findIndex(
      (e) => e.kind === "instance-lost" && e.message.startsWith(`${victim.name} `),
    );
    expect(lost).toBeGreaterThan(replacementLaunch);

    // The fleet record: the warned instance carries the warning time; the replacement is the
    // only other instance. (The event-order checks above are what prove it came early.)
    const record = await readFleetRecord(stack, id);
    expect(record.instances).toHaveLength(2);
    const warned = record.instances.find((i) => i.id === victim.name)!;
    const replacement = record.instances.find((i) => i.id !== victim.name)!;
    expect(warned.interruptionWarnedAt).toBeDefined();
    expect(replacement.interruptionWarnedAt).toBeUndefined();
    expect(replacement).toMatchObject({ market: "spot", role: "worker", state: "terminated" });
    // The API view carries the same mark (what `shardfleet status` shows as SPOT SIGNAL).
    expect(final.instances?.find((i) => i.id === victim.name)?.interruptionWarnedAt).toBe(
      warned.interruptionWarnedAt,
    );
    expect(warned.endReason).toMatch(/ended without being asked/);
    expect(replacement.endReason).toMatch(/^terminated \(operation-ended\)/);

    // And from the stack's side (one clock, this process): local EC2 started the replacement
    // before the warned worker's process exited. The window is the drain grace (~4 s); the
    // replacement typically comes well under a second after the notice, also under CPU load.
    const launched = stack.localEc2!.describe({ [FLEET_TAGS.operation]: id });
    const replacementInfo = launched.find((i) => i.instanceId === replacement.id)!;
    expect(victimGoneAt).toBeDefined();
    expect(replacementInfo.launchedAt).toBeLessThan(victimGoneAt!);
  }, 90_000);
});

function readFleetRecord(stack: LocalStack, id: string): Promise<FleetRecord> {
  return withStackStore(stack, async (store) => {
    const record = await store.getJson(keys.fleet(id), fleetRecordSchema);
    if (!record) throw new Error(`no fleet record for ${id}`);
    return record;
  });
}
