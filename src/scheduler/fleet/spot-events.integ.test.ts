/**
 * EventBridge spot events through the real local SQS/S3 server into the fleet manager, with a
 * fake capacity provider (an in-memory stand-in for EC2 whose instances run until reclaimed) and
 * a fake clock. Events are built by the local stack's builder — the JSON AWS sends — and sent
 * with the SDK; the consumer is driven one receive at a time (`pollOnce`), except in the
 * lifecycle test.
 */
import { GetQueueAttributesCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { z } from "zod";
import { capturingLogger } from "../../../test/support/api.ts";
import { FakeClock } from "../../../test/support/fake-clock.ts";
import { FakeCapacity, POOLS, PRICES } from "../../../test/support/fleet.ts";
import { freshBucket, type LocalAws, startLocalAws } from "../../../test/support/local-aws.ts";
import { splitManifest } from "../../../test/support/manifests.ts";
import { seedManifest } from "../../../test/support/seed-manifest.ts";
import { waitFor } from "../../../test/support/wait.ts";
import { ec2SpotEvent, sendSpotEvent } from "../../local/spot-events.ts";
import { keys } from "../../shared/keys.ts";
import { type Logger, silentLogger } from "../../shared/logger.ts";
import { ObjectStore } from "../../shared/object-store.ts";
import { type FleetRecord, fleetRecordSchema } from "../../shared/schemas/fleet.ts";
import type { SpotEvent } from "../../shared/schemas/spot-events.ts";
import { buildApp } from "../api/app.ts";
import { OperationService } from "../operations.ts";
import { FleetManager } from "./fleet-manager.ts";
import { SpotEventConsumer } from "./spot-events.ts";

let env: LocalAws;
beforeAll(async () => {
  env = await startLocalAws("spot-events");
});
afterAll(async () => {
  await env?.close();
});

/** The real store, except that fleet-record writes fail while `failFleetWrites` is set. */
class FlakyFleetStore extends ObjectStore {
  failFleetWrites = false;

  override async putJson<S extends z.ZodType>(
    key: string,
    schema: S,
    value: z.input<S>,
    signal?: AbortSignal,
  ): Promise<void> {
    if (this.failFleetWrites && key.endsWith("/fleet/record.json")) {
      throw new Error("S3 answered 503 (injected)");
    }
    return super.putJson(key, schema, value, signal);
  }
}

/** A fresh bucket and queues, an operation of `shards` shards, a fleet manager and a consumer. */
async function scope(options: { shards?: number; maxInstances?: number; logger?: Logger } = {}) {
  const { name, resources } = await freshBucket(env, "spot");
  const store = new FlakyFleetStore({ s3: env.clients.s3 }, { bucket: resources.bucket });
  const clock = new FakeClock({ sleeps: "instant", start: Date.parse("2025-06-01T12:00:00.000Z") });
  const capacity = new FakeCapacity(clock);
  const logger = options.logger ?? silentLogger();
  const manager = () =>
    new FleetManager(
      { capacity, queue: env.queue, store, logger, clock },
      {
        fleet: name,
        policy: { pools: POOLS, maxInstances: options.maxInstances ?? 6 },
        prices: PRICES,
      },
    );
  const fm = manager();
  const consumerFor = (target: FleetManager) =>
    new SpotEventConsumer(
      { queue: env.queue, target, logger, clock },
      { queueUrl: resources.queues.spotEvents, waitSeconds: 1, retryDelaySeconds: 0 },
    );
  const consumer = consumerFor(fm);

  const op = "op-spot";
  const shards = options.shards ?? 10;
  const now = new Date(clock.now()).toISOString();
  await seedManifest({ store, clock }, splitManifest(op, shards, now));

  const event = (kind: "interruption-warning" | "rebalance-recommendation", instanceId: string) =>
    ec2SpotEvent({ kind, instanceId, region: "us-east-1", time: new Date(clock.now()) });
  const send = (e: SpotEvent) => sendSpotEvent(env.clients.sqs, resources.queues.spotEvents, e);
  const sendRaw = (body: string) =>
    env.clients.sqs.send(
      new SendMessageCommand({ QueueUrl: resources.queues.spotEvents, MessageBody: body }),
    );
  /** Messages left on the queue, visible or not (0 once every one was deleted). */
  const left = async () => {
    const out = await env.clients.sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: resources.queues.spotEvents,
        AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
      }),
    );
    return (
      Number(out.Attributes?.ApproximateNumberOfMessages ?? 0) +
      Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0)
    );
  };
  const record = async (): Promise<FleetRecord> =>
    (await store.getJson(keys.fleet(op), fleetRecordSchema))!;
  const spotEventsOf = async () =>
    (await record()).events.filter(
      (e) => e.kind === "spot-interruption-warning" || e.kind === "rebalance-recommendation",
    );
  return {
    op,
    store,
    clock,
    capacity,
    fm,
    manager,
    consumer,
    consumerFor,
    event,
    send,
    sendRaw,
    left,
    record,
    spotEventsOf,
  };
}

describe("EventBridge spot events (real local SQS/S3, fake capacity provider)", () => {
  it("replaces an instance warned of an interruption before it is gone, and shows the warning", async () => {
    const s = await scope();
    await s.fm.tick();
    // 10 shards at 2 per instance → 5; spot in a batch of five.
    expect(s.capacity.launches.map((r) => [r.market, r.count])).toEqual([["spot", 5]]);

    await s.send(s.event("interruption-warning", "i-3"));
    expect(await s.consumer.pollOnce()).toEqual(["applied"]);
    expect(await s.left()).toBe(0);
    // Recorded before the message was deleted.
    const warning = (await s.spotEventsOf())[0]!;
    expect(warning.kind).toBe("spot-interruption-warning");
    expect(warning.message).toMatch(/^spot interruption warning for i-3 \(EventBridge\)/);
    expect((await s.record()).instances.find((i) => i.id === "i-3")?.interruptionWarnedAt).toBe(
      new Date(s.clock.now()).toISOString(),
    );

    // The next pass launches the replacement while i-3 still runs (its two minutes).
    await s.clock.advance(5_000);
    await s.fm.tick();
    expect(s.capacity.instances.get("i-3")?.state).toBe("running");
    expect(s.capacity.launches.map((r) => [r.market, r.count])).toEqual([
      ["spot", 5],
      ["spot", 1], // the cap (6) leaves one
    ]);
    const launched = (await s.record()).events.filter((e) => e.kind === "launch-requested");
    expect(launched.at(-1)?.message).toMatch(/4 live \(\+1 warned of an interruption\)/);

    // When it is gone, nothing special: no second replacement.
    s.capacity.reclaim("i-3");
    await s.clock.advance(5_000);
    await s.fm.tick();
    expect(s.capacity.launches).toHaveLength(2);
    expect((await s.record()).events.map((e) => e.kind)).toContain("instance-lost");

    // The operator's view (GET /operations/:id) shows the event.
    const operations = new OperationService({
      store: s.store,
      logger: silentLogger(),
      clock: s.clock,
    });
    const app = buildApp({ operations, logger: silentLogger(), maxUploadBytes: 1 << 20 });
    const view = (await app.inject(`/operations/${s.op}`)).json();
    expect(view.events).toContainEqual(
      expect.objectContaining({
        kind: "spot-interruption-warning",
        message: expect.stringMatching(/^spot interruption warning for i-3 \(EventBridge\)/),
      }),
    );
    await app.close();
  });

  it("a duplicated event causes nothing extra, also after a scheduler restart", async () => {
    const s = await scope();
    await s.fm.tick();
    const warning = s.event("interruption-warning", "i-2");
    await s.send(warning);
    await s.send(warning); // SQS delivers at least once; EventBridge may too
    const outcomes = [...(await s.consumer.pollOnce())];
    if (outcomes.length < 2) outcomes.push(...(await s.consumer.pollOnce()));
    expect(outcomes).toEqual(["applied", "duplicate"]);
    expect(await s.left()).toBe(0);
    await s.clock.advance(5_000);
    await s.fm.tick();
    await s.fm.tick();
    expect(s.capacity.launches.map((r) => r.count)).toEqual([5, 1]);
    expect(await s.spotEventsOf()).toHaveLength(1);

    // A restarted scheduler adopts the mark from the fleet record: a redelivery is a duplicate.
    const restarted = s.manager();
    const consumer = s.consumerFor(restarted);
    await s.send(warning);
    expect(await consumer.pollOnce()).toEqual(["not-ready"]); // before its first pass
    await restarted.tick();
    expect(await consumer.pollOnce()).toEqual(["duplicate"]);
    await restarted.tick();
    expect(s.capacity.launches.map((r) => r.count)).toEqual([5, 1]);
    expect(await s.spotEventsOf()).toHaveLength(1);
    expect(await s.left()).toBe(0);
  });

  it("keeps the message while the fleet record cannot be written, and records it on redelivery", async () => {
    const s = await scope();
    await s.fm.tick();
    s.store.failFleetWrites = true;
    await s.send(s.event("interruption-warning", "i-2"));
    expect(await s.consumer.pollOnce()).toEqual(["failed"]);
    expect(await s.left()).toBe(1);
    expect(await s.spotEventsOf()).toHaveLength(0);

    // The mark is already in memory, so the redelivery is a duplicate — deleted only once the
    // record holding the mark and its event was written.
    s.store.failFleetWrites = false;
    expect(await s.consumer.pollOnce()).toEqual(["duplicate"]);
    expect(await s.left()).toBe(0);
    expect(await s.spotEventsOf()).toHaveLength(1);
    expect((await s.record()).instances.find((i) => i.id === "i-2")?.interruptionWarnedAt).toBe(
      new Date(s.clock.now()).toISOString().replace(/\.\d{3}Z$/, ".000Z"),
    );
  });

  it("deletes an invalid message with a log line naming the reason", async () => {
    const { logger, lines } = capturingLogger("debug");
    const s = await scope({ logger });
    await s.fm.tick();
    await s.sendRaw("not json");
    const stateChange = {
      ...s.event("interruption-warning", "i-1"),
      "detail-type": "EC2 Instance State-change Notification",
      detail: { "instance-id": "i-1", state: "pending" },
    };
    await s.sendRaw(JSON.stringify(stateChange));
    const noAction = s.event("interruption-warning", "i-1") as Record<string, unknown>;
    noAction.detail = { "instance-id": "i-1" };
    await s.sendRaw(JSON.stringify(noAction));

    const outcomes: string[] = [];
    while (outcomes.length < 3) outcomes.push(...(await s.consumer.pollOnce()));
    expect(outcomes).toEqual(["invalid", "invalid", "invalid"]);
    expect(await s.left()).toBe(0);
    const invalid = lines.filter((l) => String(l.msg).startsWith("invalid spot event deleted"));
    expect(invalid.map((l) => [l.level, l.reason])).toEqual([
      [40, expect.stringMatching(/^not JSON/)],
      [40, expect.stringMatching(/^detail-type: /)],
      [40, expect.stringMatching(/^detail\.instance-action: /)],
    ]);
    // Nothing changed for the fleet.
    await s.fm.tick();
    expect(s.capacity.launches).toHaveLength(1);
    expect(await s.spotEventsOf()).toEqual([]);
  });

  it("drops an event for an instance of another stack with a debug line", async () => {
    const { logger, lines } = capturingLogger("debug");
    const s = await scope({ logger });
    await s.fm.tick();
    await s.send(s.event("interruption-warning", "i-0123456789abcdef0"));
    expect(await s.consumer.pollOnce()).toEqual(["unknown-instance"]);
    expect(await s.left()).toBe(0);
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 20,
        instanceId: "i-0123456789abcdef0",
        msg: expect.stringMatching(/dropped/),
      }),
    );
    await s.fm.tick();
    expect(s.capacity.launches).toHaveLength(1);
    expect(await s.spotEventsOf()).toEqual([]);
  });

  it("records a rebalance recommendation and launches nothing for it", async () => {
    const s = await scope();
    await s.fm.tick();
    await s.send(s.event("rebalance-recommendation", "i-4"));
    expect(await s.consumer.pollOnce()).toEqual(["applied"]);
    await s.clock.advance(5_000);
    await s.fm.tick();
    expect(s.capacity.launches).toHaveLength(1);
    const [rebalance] = await s.spotEventsOf();
    expect(rebalance?.kind).toBe("rebalance-recommendation");
    expect(rebalance?.message).toMatch(/^rebalance recommendation for i-4 \(EventBridge\)/);
  });

  it("runs as a loop: started, it applies what arrives; stopped, it stops", async () => {
    const s = await scope();
    await s.fm.tick();
    s.consumer.start();
    await s.send(s.event("interruption-warning", "i-5"));
    await waitFor("one spot event", async () =>
      (await s.spotEventsOf()).length === 1 ? true : undefined,
    );
    await s.consumer.stop();
    expect(s.consumer.state).toBe("stopped");
    expect(await s.left()).toBe(0);
  });
});
