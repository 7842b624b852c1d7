import { describe, expect, it } from "vitest";
import type { SimResult } from "./engine.ts";
import { parseSimParams } from "./params.ts";
import { quotaReport, S3_PUTS_PER_PREFIX, SQS_IN_FLIGHT } from "./quotas.ts";

const peaks = (over: Partial<SimResult>): SimResult =>
  ({
    peakInFlightMessages: 100,
    peakPutsPerSecond: 10,
    peakSpotVcpus: 100,
    createFleetCalls: 20,
    ...over,
  }) as SimResult;

describe("quotaReport", () => {
  it("passes a plan inside every limit and names where each would be hit", () => {
    const q = quotaReport(peaks({}), parseSimParams({ shards: 1000, spotVcpuQuota: 640 }));
    expect(q.every((c) => c.ok)).toBe(true);
    const vcpu = q.find((c) => c.limit.startsWith("EC2 spot vCPUs"))!;
    expect(vcpu.note).toMatch(/hit at 320 spot instances of 2 vCPUs/);
    expect(q.find((c) => c.limit.startsWith("S3"))!.note).toContain("scratch/OPERATION/shards/");
  });

  it("flags each limit a plan goes over", () => {
    const q = quotaReport(
      peaks({
        peakInFlightMessages: SQS_IN_FLIGHT + 1,
        peakPutsPerSecond: S3_PUTS_PER_PREFIX + 1,
        peakSpotVcpus: 20_000,
      }),
      parseSimParams({ createFleetLatencyMs: 100, createFleetPerSecond: 5 }),
    );
    const over = q.filter((c) => !c.ok).map((c) => c.limit);
    expect(over).toEqual([
      "SQS in-flight messages per queue",
      "S3 PUT/s per prefix",
      "EC2 CreateFleet calls/s (assumed)",
      "EC2 spot vCPUs (account quota)",
    ]);
  });
});
