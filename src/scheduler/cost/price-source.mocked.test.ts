/**
 * Spot prices from DescribeSpotPriceHistory, mocked EC2: a real EC2Client through a stub HTTP
 * handler answering with responses shaped like the API reference's (XML, paginated by
 * nextToken), so the SDK's own parsing is exercised.
 */
import { Readable } from "node:stream";
import { EC2Client } from "@aws-sdk/client-ec2";
import { describe, expect, it } from "vitest";
import { billInstance } from "./billing.ts";
import { Ec2SpotPriceSource, TablePriceSource } from "./price-source.ts";

const T0 = Date.parse("2026-01-01T00:00:00Z");

function item(type: string, az: string, price: string, at: string): string {
  return `<item><instanceType>${type}</instanceType><productDescription>Linux/UNIX</productDescription><spotPrice>${price}</spotPrice><timestamp>${at}</timestamp><availabilityZone>${az}</availabilityZone></item>`;
}

function page(items: string[], nextToken?: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>
<DescribeSpotPriceHistoryResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>59dbff89-35bd-4eac-99ed-be587EXAMPLE</requestId>
  <spotPriceHistorySet>${items.join("")}</spotPriceHistorySet>
  <nextToken>${nextToken ?? ""}</nextToken>
</DescribeSpotPriceHistoryResponse>`;
}

function fakeEc2(pages: string[]): { ec2: EC2Client; bodies: URLSearchParams[] } {
  const bodies: URLSearchParams[] = [];
  const requestHandler = {
    async handle(req: { body?: unknown }) {
      bodies.push(new URLSearchParams(String(req.body)));
      const body = pages.shift();
      if (body === undefined) throw new Error("unexpected EC2 call");
      return {
        response: {
          statusCode: 200,
          headers: { "content-type": "text/xml;charset=UTF-8" },
          body: Readable.from([Buffer.from(body)]),
        },
      };
    },
  };
  const ec2 = new EC2Client({
    region: "us-east-1",
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
    requestHandler,
    maxAttempts: 1,
  });
  return { ec2, bodies };
}

describe("spot prices (mocked EC2)", () => {
  it("reads every page of DescribeSpotPriceHistory for the type/AZ over the life, and caches it", async () => {
    // Newest first, as EC2 answers; the first point is the price in force at StartTime.
    const { ec2, bodies } = fakeEc2([
      page([item("c7g.large", "us-east-1a", "0.040000", "2026-01-01T01:00:00.000Z")], "tok-2"),
      page([item("c7g.large", "us-east-1a", "0.020000", "2025-12-31T23:10:00.000Z")]),
    ]);
    const source = new Ec2SpotPriceSource({ ec2 });
    const query = {
      market: "spot" as const,
      instanceType: "c7g.large",
      availabilityZone: "us-east-1a",
      fromMs: T0,
      toMs: T0 + 2 * 3_600_000,
    };
    const history = await source.history(query);
    expect(history).toEqual([
      { from: Date.parse("2025-12-31T23:10:00Z"), usdPerHour: 0.02 },
      { from: Date.parse("2026-01-01T01:00:00Z"), usdPerHour: 0.04 },
    ]);
    expect(bodies).toHaveLength(2);
    const first = bodies[0]!;
    expect(first.get("Action")).toBe("DescribeSpotPriceHistory");
    expect(first.get("InstanceType.1")).toBe("c7g.large");
    expect(first.get("AvailabilityZone")).toBe("us-east-1a");
    expect(first.get("ProductDescription.1")).toBe("Linux/UNIX");
    expect(first.get("StartTime")).toBe("2026-01-01T00:00:00Z");
    expect(bodies[1]!.get("NextToken")).toBe("tok-2");
    // Two hours across a price change: one at $0.02, one at $0.04.
    expect(billInstance(query.fromMs, query.toMs, history!).usd).toBeCloseTo(0.06, 12);
    // Cached: no third call.
    expect(await source.history(query)).toEqual(history);
    expect(bodies).toHaveLength(2);
  });

  it("falls back to the table when EC2 has no history, and prices on-demand from the table", async () => {
    const { ec2, bodies } = fakeEc2([page([])]);
    const source = new Ec2SpotPriceSource({
      ec2,
      fallback: new TablePriceSource({
        "on-demand": { "c7g.large": 0.0725 },
        spot: { "c7g.large": 0.03 },
      }),
    });
    const spot = await source.history({
      market: "spot",
      instanceType: "c7g.large",
      availabilityZone: "us-east-1b",
      fromMs: T0,
      toMs: T0 + 1000,
    });
    expect(spot).toEqual([{ from: T0, usdPerHour: 0.03 }]);
    const od = await source.history({
      market: "on-demand",
      instanceType: "c7g.large",
      fromMs: T0,
      toMs: T0 + 1000,
    });
    expect(od).toEqual([{ from: T0, usdPerHour: 0.0725 }]);
    expect(bodies).toHaveLength(1);
    expect(source.onDemand("nope.large")).toBeUndefined();
  });
});
