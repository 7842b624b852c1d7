import { describe, expect, it } from "vitest";
import { parseSpotEvent, toSpotSignal } from "./spot-events.ts";

// The examples of the EC2 User Guide ("Spot Instance interruption notices", "EC2 instance
// rebalance recommendations"), with a real time in place of "yyyy-mm-ddThh:mm:ssZ".
const ENVELOPE = {
  version: "0",
  id: "12345678-1234-1234-1234-123456789012",
  source: "aws.ec2",
  account: "123456789012",
  time: "2026-11-23T10:00:00Z",
  region: "us-east-2",
  resources: ["arn:aws:ec2:us-east-2:123456789012:instance/i-1234567890abcdef0"],
};
const WARNING = {
  ...ENVELOPE,
  "detail-type": "EC2 Spot Instance Interruption Warning",
  detail: { "instance-id": "i-1234567890abcdef0", "instance-action": "terminate" },
};
const REBALANCE = {
  ...ENVELOPE,
  "detail-type": "EC2 Instance Rebalance Recommendation",
  detail: { "instance-id": "i-1234567890abcdef0" },
};

describe("EventBridge spot events", () => {
  it.each([
    {
      event: WARNING,
      signal: {
        kind: "interruption-warning",
        instanceId: "i-1234567890abcdef0",
        at: Date.parse("2026-11-23T10:00:00Z"),
        eventId: WARNING.id,
        action: "terminate",
      },
    },
    {
      event: REBALANCE,
      signal: {
        kind: "rebalance-recommendation",
        instanceId: "i-1234567890abcdef0",
        at: Date.parse("2026-11-23T10:00:00Z"),
        eventId: REBALANCE.id,
      },
    },
  ])("parses AWS's $signal.kind example into a signal", ({ event, signal }) => {
    const parsed = parseSpotEvent(JSON.stringify(event));
    expect(parsed.ok && toSpotSignal(parsed.event)).toEqual(signal);
  });

  it("accepts the AZ form of the instance ARN and fields AWS may add", () => {
    const event = {
      ...WARNING,
      resources: ["arn:aws:ec2:us-east-2a:instance/i-1234567890abcdef0"],
      detail: { ...WARNING.detail, "instance-action": "hibernate", extra: 1 },
      "replay-name": "x",
    };
    expect(parseSpotEvent(JSON.stringify(event)).ok).toBe(true);
  });

  it("refuses what is not one of the two events, with a reason", () => {
    const reason = (body: unknown) => {
      const out = parseSpotEvent(typeof body === "string" ? body : JSON.stringify(body));
      return out.ok ? "ok" : out.reason;
    };
    expect(reason("{")).toMatch(/^not JSON/);
    expect(reason({ ...WARNING, "detail-type": "EC2 Instance State-change Notification" })).toMatch(
      /^detail-type: /,
    );
    expect(reason({ ...WARNING, source: "aws.autoscaling" })).toMatch(/^source: /);
    expect(reason({ ...WARNING, time: "yyyy-mm-ddThh:mm:ssZ" })).toMatch(/^time: /);
    expect(reason({ ...WARNING, detail: { "instance-id": "i-1" } })).toMatch(
      /^detail\.instance-action: /,
    );
    expect(reason({ ...REBALANCE, detail: {} })).toMatch(/^detail\.instance-id: /);
    expect(reason([])).toMatch(/^\(event\)|^detail-type/);
  });
});
