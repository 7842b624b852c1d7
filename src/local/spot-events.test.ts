/**
 * The local stack's EventBridge-shaped spot events: the builder makes what the scheduler's schema
 * accepts, and the stack sends one for a noticed reclaim or a rebalance recommendation — never
 * for a kill without notice — to the real local SQS server.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAwsClients } from "../shared/aws.ts";
import { parseSpotEvent } from "../shared/schemas/spot-events.ts";
import { ShardQueue } from "../shared/shard-queue.ts";
import { ec2SpotEvent, LOCAL_ACCOUNT } from "./spot-events.ts";
import { LOCAL_CREDENTIALS, type LocalStack, startLocalStack } from "./stack.ts";

describe("ec2SpotEvent", () => {
  it("builds the interruption warning AWS sends", () => {
    const event = ec2SpotEvent({
      kind: "interruption-warning",
      instanceId: "local-007",
      region: "us-east-1",
      time: new Date("2026-11-23T10:00:00.456Z"),
    });
    expect(event).toEqual({
      version: "0",
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      "detail-type": "EC2 Spot Instance Interruption Warning",
      source: "aws.ec2",
      account: LOCAL_ACCOUNT,
      time: "2026-11-23T10:00:00Z",
      region: "us-east-1",
      resources: [`arn:aws:ec2:us-east-1:${LOCAL_ACCOUNT}:instance/local-007`],
      detail: { "instance-id": "local-007", "instance-action": "terminate" },
    });
    expect(parseSpotEvent(JSON.stringify(event))).toEqual({ ok: true, event });
  });

  it("builds the rebalance recommendation, a new id each time", () => {
    const a = ec2SpotEvent({ kind: "rebalance-recommendation", instanceId: "i-1", region: "r" });
    const b = ec2SpotEvent({ kind: "rebalance-recommendation", instanceId: "i-1", region: "r" });
    expect(a["detail-type"]).toBe("EC2 Instance Rebalance Recommendation");
    expect(a.detail).toEqual({ "instance-id": "i-1" });
    expect(a.id).not.toBe(b.id);
    expect(parseSpotEvent(JSON.stringify(a)).ok).toBe(true);
  });
});

describe("the local stack sends spot events", () => {
  let stack: LocalStack;
  let clients: ReturnType<typeof createAwsClients>;

  beforeAll(async () => {
    stack = await startLocalStack({ scheduler: false, timeFactor: 0.01 });
    clients = createAwsClients({
      endpoint: stack.endpoint,
      region: stack.region,
      credentials: LOCAL_CREDENTIALS,
    });
  }, 60_000);

  afterAll(async () => {
    clients?.destroy();
    await stack?.close();
  }, 60_000);

  it("for a noticed reclaim and a rebalance recommendation, not for a kill without notice", async () => {
    const queue = new ShardQueue({ sqs: clients.sqs });
    const receive = () =>
      queue.receive(stack.resources.queues.spotEvents, {
        max: 10,
        waitSeconds: 1,
        visibilityTimeout: 30,
      });
    const [noticed, killed, advised] = [
      await stack.addInstance("spot"),
      await stack.addInstance("spot"),
      await stack.addInstance("spot"),
    ];
    killed!.reclaim(false);
    noticed!.reclaim(true);
    advised!.recommendRebalance();
    const seen: { type: string; instanceId: string }[] = [];
    for (let polls = 0; seen.length < 2 && polls < 10; polls++) {
      for (const m of await receive()) {
        const parsed = parseSpotEvent(m.body);
        if (!parsed.ok) throw new Error(parsed.reason);
        seen.push({
          type: parsed.event["detail-type"],
          instanceId: parsed.event.detail["instance-id"],
        });
      }
    }
    expect(seen).toEqual(
      expect.arrayContaining([
        { type: "EC2 Spot Instance Interruption Warning", instanceId: noticed!.name },
        { type: "EC2 Instance Rebalance Recommendation", instanceId: advised!.name },
      ]),
    );
    expect(seen).toHaveLength(2);
    expect(await receive()).toEqual([]); // nothing for the kill
  }, 60_000);
});
