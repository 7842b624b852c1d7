/**
 * Local EC2 through the local capacity adapter (the scheduler's side of the wire): launch across
 * pools, describe by tags, terminate, idempotent client tokens, the no-spot-capacity window,
 * the instance limit, and refusals. Instances are stand-ins here (no processes): the stack's
 * machinery behind `startInstance` is exercised by the fleet end-to-end test.
 */
import { afterEach, describe, expect, it } from "vitest";
import { FakeClock } from "../../test/support/fake-clock.ts";
import { LocalCapacity } from "../scheduler/fleet/local-capacity.ts";
import {
  CapacityConfigError,
  FLEET_TAGS,
  type LaunchRequest,
  newClientToken,
} from "../shared/capacity.ts";
import { RetryableError } from "../shared/errors.ts";
import { silentLogger } from "../shared/logger.ts";
import { type LocalEc2, type LocalEc2Instance, startLocalEc2 } from "./local-ec2.ts";

class StandIn implements LocalEc2Instance {
  state: LocalEc2Instance["state"] = "running";
  constructor(readonly name: string) {}
  async terminate() {
    // The process takes a moment to exit: shutting-down until then.
    await new Promise((r) => setTimeout(r, 50));
    this.state = "stopped";
  }
}

const POOLS = [
  { instanceType: "local.small", availabilityZone: "local-1a" },
  { instanceType: "local.small", availabilityZone: "local-1b" },
];

function request(overrides: Partial<LaunchRequest> = {}): LaunchRequest {
  return {
    market: "spot",
    count: 3,
    pools: POOLS,
    tags: { [FLEET_TAGS.fleet]: "f1", [FLEET_TAGS.operation]: "op-1" },
    clientToken: newClientToken(),
    ...overrides,
  };
}

const open: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

async function setup(options: Parameters<typeof startLocalEc2>[1] = {}) {
  const clock = new FakeClock({ sleeps: "instant", start: 1_000_000 });
  const started: StandIn[] = [];
  let n = 0;
  const ec2: LocalEc2 = await startLocalEc2(
    {
      startInstance: async () => {
        const i = new StandIn(`local-${String(++n).padStart(3, "0")}`);
        started.push(i);
        return i;
      },
      logger: silentLogger(),
      clock,
    },
    options,
  );
  const capacity = new LocalCapacity({}, { url: ec2.url });
  open.push(ec2, capacity);
  return { ec2, capacity, clock, started };
}

describe("local EC2 through LocalCapacity", () => {
  it("launches, describes by tags, and terminates (shutting-down, then terminated)", async () => {
    const { capacity, clock } = await setup();
    const result = await capacity.launch(request({ market: "on-demand", count: 3 }));
    expect(result.errors).toEqual([]);
    expect(result.launched.map((i) => i.instanceId)).toEqual([
      "local-001",
      "local-002",
      "local-003",
    ]);
    expect(result.launched.every((i) => i.market === "on-demand")).toBe(true);
    expect(result.launched[0]).toMatchObject({
      instanceType: "local.small",
      availabilityZone: "local-1a",
      launchedAt: clock.now(),
    });

    await capacity.launch(
      request({ market: "on-demand", count: 1, tags: { [FLEET_TAGS.fleet]: "other" } }),
    );
    const mine = await capacity.describe({ tags: { [FLEET_TAGS.fleet]: "f1" } });
    expect(mine.map((i) => [i.instanceId, i.state])).toEqual([
      ["local-001", "running"],
      ["local-002", "running"],
      ["local-003", "running"],
    ]);
    expect(mine[0]!.tags[FLEET_TAGS.operation]).toBe("op-1");

    await capacity.terminate(["local-002", "i-unknown"]);
    let states = await capacity.describe({ tags: { [FLEET_TAGS.fleet]: "f1" } });
    expect(states.find((i) => i.instanceId === "local-002")?.state).toBe("shutting-down");
    await new Promise((r) => setTimeout(r, 100));
    states = await capacity.describe({ tags: { [FLEET_TAGS.fleet]: "f1" } });
    expect(states.find((i) => i.instanceId === "local-002")?.state).toBe("terminated");
    // Terminating again is not an error.
    await capacity.terminate(["local-002"]);
  });

  it("answers a repeated client token with the first result and launches nothing more", async () => {
    const { capacity, started } = await setup();
    const req = request({ market: "on-demand", count: 2 });
    const [a, b] = await Promise.all([capacity.launch(req), capacity.launch(req)]);
    const again = await capacity.launch(req);
    expect(b).toEqual(a);
    expect(again).toEqual(a);
    expect(started).toHaveLength(2);

    const err = await capacity.launch({ ...req, count: 3 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CapacityConfigError);
    expect((err as CapacityConfigError).providerCode).toBe("IdempotentParameterMismatch");
    expect(started).toHaveLength(2);
  });

  it("has no spot capacity in the outage window: one capacity error per pool; on-demand still launches", async () => {
    const { ec2, capacity, clock } = await setup({ spotOutage: { fromMs: 0, toMs: 60_000 } });
    const spot = await capacity.launch(request({ count: 5 }));
    expect(spot.launched).toEqual([]);
    expect(spot.errors).toEqual(
      POOLS.map((pool) => ({
        pool,
        market: "spot",
        code: "InsufficientInstanceCapacity",
        message: expect.stringContaining("simulated outage"),
        kind: "capacity",
      })),
    );
    const onDemand = await capacity.launch(request({ market: "on-demand", count: 2 }));
    expect(onDemand.launched).toHaveLength(2);

    await clock.advance(60_000);
    expect(ec2.spotAvailable()).toBe(true);
    expect((await capacity.launch(request({ count: 1 }))).launched).toHaveLength(1);

    ec2.setSpotCapacity(false);
    expect((await capacity.launch(request({ count: 1 }))).errors).toHaveLength(2);
    ec2.setSpotCapacity(undefined);
    expect((await capacity.launch(request({ count: 1 }))).errors).toEqual([]);
  });

  it("fills what the instance limit allows and reports the rest (partial fulfilment)", async () => {
    const { capacity } = await setup({ maxInstances: 4 });
    const result = await capacity.launch(request({ market: "on-demand", count: 6 }));
    expect(result.launched).toHaveLength(4);
    expect(result.errors).toEqual([
      expect.objectContaining({ code: "InstanceLimitExceeded", kind: "capacity" }),
    ]);
  });

  it("shows an instance that ended by itself (a spot reclaim) as terminated", async () => {
    const { capacity, started } = await setup();
    await capacity.launch(request({ count: 2 }));
    started[0]!.state = "gone";
    const states = await capacity.describe({ tags: {} });
    expect(states.map((i) => i.state)).toEqual(["terminated", "running"]);
  });

  it("refuses a malformed request naming the field, and is retryable when unreachable", async () => {
    const { ec2, capacity } = await setup();
    const err = await capacity.launch(request({ count: 0 })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CapacityConfigError);
    expect((err as Error).message).toMatch(/InvalidParameterValue: count/);
    const noPools = await capacity.launch(request({ pools: [] })).catch((e: unknown) => e);
    expect((noPools as Error).message).toMatch(/pools/);

    await ec2.close();
    const down = await capacity.describe({ tags: {} }).catch((e: unknown) => e);
    expect(down).toBeInstanceOf(RetryableError);
    expect((down as Error).message).toMatch(/unreachable/);
  });
});
