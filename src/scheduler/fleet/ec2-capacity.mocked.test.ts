/**
 * The EC2 adapter against MOCKED EC2 API answers: a fake client returns canned outputs shaped like
 * the EC2 API reference's (CreateFleet: FleetId, Errors[], Instances[]; DescribeInstances:
 * Reservations[].Instances[], NextToken) and records every command's input. One test drives a
 * real EC2Client through a stub HTTP handler to show the SDK's own retries keep the ClientToken.
 * Nothing here talks to AWS.
 */
import { Readable } from "node:stream";
import { type CreateFleetCommandInput, EC2Client, EC2ServiceException } from "@aws-sdk/client-ec2";
import { describe, expect, it } from "vitest";
import { FakeClock } from "../../../test/support/fake-clock.ts";
import {
  CapacityConfigError,
  fleetTags,
  type LaunchRequest,
  newClientToken,
} from "../../shared/capacity.ts";
import { ConfigError, RetryableError } from "../../shared/errors.ts";
import { silentLogger } from "../../shared/logger.ts";
import { classifyEc2ErrorCode, Ec2Capacity, type Ec2CapacityOptions } from "./ec2-capacity.ts";
import { emptyFleetMemory, type LaunchDecision, planFleet, recordLaunchOutcome } from "./policy.ts";

const NOW = Date.parse("2025-06-01T12:00:00Z");
const clock = new FakeClock({ sleeps: "instant", start: NOW });

type Reply = unknown | Error | ((input: unknown) => unknown);

/** A stand-in for EC2Client: canned replies in order, every command's input recorded. */
class FakeEc2 {
  readonly calls: { command: string; input: Record<string, unknown> }[] = [];
  readonly #replies: { command: string; reply: Reply }[] = [];

  reply(command: string, reply: Reply): this {
    this.#replies.push({ command, reply });
    return this;
  }

  async send(command: { input: Record<string, unknown> }): Promise<unknown> {
    const name = command.constructor.name;
    this.calls.push({ command: name, input: structuredClone(command.input) });
    const next = this.#replies.shift();
    if (!next || next.command !== name) throw new Error(`unexpected ${name}`);
    if (next.reply instanceof Error) throw next.reply;
    return typeof next.reply === "function" ? next.reply(command.input) : next.reply;
  }

  inputs<T>(command: string): T[] {
    return this.calls.filter((c) => c.command === command).map((c) => c.input as T);
  }
}

const OPTIONS: Ec2CapacityOptions = {
  launchTemplate: { id: "lt-0e8c754449b27161c", version: "3" },
  instanceTypes: ["c7g.large", "c6g.large"],
  subnets: [
    { subnetId: "subnet-0a1b2c3d", availabilityZone: "us-east-1a" },
    { subnetId: "subnet-4e5f6a7b", availabilityZone: "us-east-1b" },
  ],
};

function adapter(fake: FakeEc2, options: Ec2CapacityOptions = OPTIONS) {
  return new Ec2Capacity(
    { ec2: fake as unknown as EC2Client, logger: silentLogger(), clock },
    options,
  );
}

function request(cap: Ec2Capacity, extra: Partial<LaunchRequest> = {}): LaunchRequest {
  return {
    market: "spot",
    count: 6,
    pools: [...cap.pools],
    tags: fleetTags({ fleet: "prod", operationId: "op-7", role: "worker", market: "spot" }),
    clientToken: "0f9d8e7c-6b5a-4938-8271-605f4e3d2c1b",
    ...extra,
  };
}

const meta = {
  $metadata: { httpStatusCode: 200, requestId: "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111" },
};
const FLEET_ID = "fleet-12a34b55-67cd-8ef9-ba9b-9208dEXAMPLE";

/** One entry of CreateFleet's `Instances[]`. */
const fleetInstance = (
  type: string,
  subnetId: string,
  az: string,
  ids: string[],
  lifecycle: "spot" | "on-demand" = "spot",
) => ({
  LaunchTemplateAndOverrides: {
    LaunchTemplateSpecification: { LaunchTemplateId: "lt-0e8c754449b27161c", Version: "3" },
    Overrides: { InstanceType: type, SubnetId: subnetId, AvailabilityZone: az },
  },
  Lifecycle: lifecycle,
  InstanceIds: ids,
  InstanceType: type,
});

/** One entry of CreateFleet's `Errors[]`. */
const fleetError = (code: string, message: string, overrides?: Record<string, string>) => ({
  ...(overrides
    ? {
        LaunchTemplateAndOverrides: {
          LaunchTemplateSpecification: { LaunchTemplateId: "lt-0e8c754449b27161c", Version: "3" },
          Overrides: overrides,
        },
      }
    : {}),
  Lifecycle: "spot",
  ErrorCode: code,
  ErrorMessage: message,
});

const ICE = (type: string, az: string) =>
  `We currently do not have sufficient ${type} capacity in the Availability Zone you requested (${az}). Our system will be working on provisioning additional capacity.`;

const sdkError = (name: string, message: string, status: number, fault: "client" | "server") =>
  new EC2ServiceException({
    name,
    message,
    $fault: fault,
    $metadata: { httpStatusCode: status, requestId: "b2c3d4e5-EXAMPLE" },
  });

describe("EC2 adapter (mocked EC2 API): launch", () => {
  it("requests an instant fleet: price-capacity-optimized spot, overrides = types × subnets, tags, client token", async () => {
    const fake = new FakeEc2().reply("CreateFleetCommand", { ...meta, FleetId: FLEET_ID });
    const cap = adapter(fake);
    await cap.launch(request(cap));
    const [input] = fake.inputs<CreateFleetCommandInput>("CreateFleetCommand");
    const tags = [
      { Key: "shardfleet:fleet", Value: "prod" },
      { Key: "shardfleet:operation", Value: "op-7" },
      { Key: "shardfleet:role", Value: "worker" },
      { Key: "shardfleet:market", Value: "spot" },
    ];
    expect(input).toEqual({
      Type: "instant",
      ClientToken: "0f9d8e7c-6b5a-4938-8271-605f4e3d2c1b",
      TargetCapacitySpecification: { TotalTargetCapacity: 6, DefaultTargetCapacityType: "spot" },
      SpotOptions: {
        AllocationStrategy: "price-capacity-optimized",
        InstanceInterruptionBehavior: "terminate",
      },
      OnDemandOptions: { AllocationStrategy: "lowest-price" },
      LaunchTemplateConfigs: [
        {
          LaunchTemplateSpecification: { LaunchTemplateId: "lt-0e8c754449b27161c", Version: "3" },
          Overrides: [
            { InstanceType: "c7g.large", SubnetId: "subnet-0a1b2c3d" },
            { InstanceType: "c7g.large", SubnetId: "subnet-4e5f6a7b" },
            { InstanceType: "c6g.large", SubnetId: "subnet-0a1b2c3d" },
            { InstanceType: "c6g.large", SubnetId: "subnet-4e5f6a7b" },
          ],
        },
      ],
      TagSpecifications: [
        { ResourceType: "fleet", Tags: tags },
        { ResourceType: "instance", Tags: tags },
      ],
    });
  });

  it("names the launch template by name ($Default version) and asks on-demand as the default capacity type", async () => {
    const fake = new FakeEc2().reply("CreateFleetCommand", { ...meta, FleetId: FLEET_ID });
    const cap = adapter(fake, {
      launchTemplate: { name: "shardfleet-worker" },
      instanceTypes: ["c7g.large"],
      subnets: [],
    });
    await cap.launch(request(cap, { market: "on-demand", count: 2 }));
    const [input] = fake.inputs<CreateFleetCommandInput>("CreateFleetCommand");
    expect(input!.LaunchTemplateConfigs![0]!.LaunchTemplateSpecification).toEqual({
      LaunchTemplateName: "shardfleet-worker",
      Version: "$Default",
    });
    expect(input!.LaunchTemplateConfigs![0]!.Overrides).toEqual([{ InstanceType: "c7g.large" }]);
    expect(input!.TargetCapacitySpecification).toEqual({
      TotalTargetCapacity: 2,
      DefaultTargetCapacityType: "on-demand",
    });
  });

  it("full spot fulfilment: every instance comes back with its market, type, AZ and subnet", async () => {
    const ids = ["i-0a1", "i-0a2", "i-0a3", "i-0a4"];
    const fake = new FakeEc2().reply("CreateFleetCommand", {
      ...meta,
      FleetId: FLEET_ID,
      Errors: [],
      Instances: [
        fleetInstance("c7g.large", "subnet-0a1b2c3d", "us-east-1a", ids),
        fleetInstance("c6g.large", "subnet-4e5f6a7b", "us-east-1b", ["i-0b1", "i-0b2"]),
      ],
    });
    const cap = adapter(fake);
    const result = await cap.launch(request(cap));
    expect(result.errors).toEqual([]);
    expect(result.requestId).toBe(FLEET_ID);
    expect(result.launched).toHaveLength(6);
    expect(result.launched[0]).toEqual({
      instanceId: "i-0a1",
      market: "spot",
      instanceType: "c7g.large",
      availabilityZone: "us-east-1a",
      subnetId: "subnet-0a1b2c3d",
      launchedAt: NOW,
    });
    expect(result.launched[5]).toMatchObject({ instanceId: "i-0b2", instanceType: "c6g.large" });
  });

  it("partial fulfilment: the instances that launched and a capacity error per pool that did not", async () => {
    const fake = new FakeEc2().reply("CreateFleetCommand", {
      ...meta,
      FleetId: FLEET_ID,
      Errors: [
        fleetError("InsufficientInstanceCapacity", ICE("c7g.large", "us-east-1a"), {
          InstanceType: "c7g.large",
          SubnetId: "subnet-0a1b2c3d",
          AvailabilityZone: "us-east-1a",
        }),
        fleetError("InsufficientInstanceCapacity", ICE("c7g.large", "us-east-1b"), {
          InstanceType: "c7g.large",
          SubnetId: "subnet-4e5f6a7b",
          AvailabilityZone: "us-east-1b",
        }),
      ],
      Instances: [fleetInstance("c6g.large", "subnet-0a1b2c3d", "us-east-1a", ["i-0c1", "i-0c2"])],
    });
    const cap = adapter(fake);
    const result = await cap.launch(request(cap));
    expect(result.launched.map((i) => i.instanceId)).toEqual(["i-0c1", "i-0c2"]);
    expect(result.errors).toEqual([
      {
        pool: cap.pools[0],
        market: "spot",
        code: "InsufficientInstanceCapacity",
        message: ICE("c7g.large", "us-east-1a"),
        kind: "capacity",
      },
      {
        pool: cap.pools[1],
        market: "spot",
        code: "InsufficientInstanceCapacity",
        message: ICE("c7g.large", "us-east-1b"),
        kind: "capacity",
      },
    ]);
  });

  it("capacity errors for every pool: nothing launched, and the policy sends the need to on-demand", async () => {
    const cap = adapter(new FakeEc2());
    const fake = new FakeEc2().reply("CreateFleetCommand", {
      ...meta,
      FleetId: FLEET_ID,
      Errors: cap.pools.map((p, n) =>
        fleetError(
          [
            "InsufficientInstanceCapacity",
            "UnfulfillableCapacity",
            "SpotMaxPriceTooLow",
            "MaxSpotInstanceCountExceeded",
          ][n]!,
          "no spot capacity",
          { InstanceType: p.instanceType, SubnetId: p.subnetId! },
        ),
      ),
      Instances: [],
    });
    const ec2 = adapter(fake);
    const result = await ec2.launch(request(ec2));
    expect(result.launched).toEqual([]);
    expect(result.errors.map((e) => [e.pool, e.kind])).toEqual(
      cap.pools.map((p) => [p, "capacity"]),
    );

    const operations = [{ id: "op-7", pendingShards: 12, running: [], completedShardMs: [] }];
    const prices = { spot: {}, "on-demand": {} };
    const options = { pools: [...cap.pools] };
    const first = planFleet(
      { operations, instances: [], prices, memory: emptyFleetMemory() },
      NOW,
      options,
    );
    const memory = recordLaunchOutcome(
      first.memory,
      first.decisions[0] as LaunchDecision,
      result,
      NOW,
    );
    const next = planFleet({ operations, instances: [], prices, memory }, NOW + 1000, options);
    expect(next.decisions[0]).toMatchObject({ type: "launch", market: "on-demand", count: 6 });
  });

  it("returns instances that launched despite an error, and reports a config error in the answer as such", async () => {
    const fake = new FakeEc2().reply("CreateFleetCommand", {
      ...meta,
      FleetId: FLEET_ID,
      Errors: [
        fleetError(
          "InvalidParameterValue",
          "The requested configuration is currently not supported. Please check the documentation for supported configurations.",
          { InstanceType: "c6g.large", SubnetId: "subnet-4e5f6a7b" },
        ),
      ],
      Instances: [fleetInstance("c7g.large", "subnet-0a1b2c3d", "us-east-1a", ["i-0d1"])],
    });
    const cap = adapter(fake);
    const result = await cap.launch(request(cap));
    expect(result.launched.map((i) => i.instanceId)).toEqual(["i-0d1"]);
    expect(result.errors).toEqual([
      expect.objectContaining({
        code: "InvalidParameterValue",
        kind: "config",
        pool: cap.pools[3],
      }),
    ]);
  });

  it("an error naming only an instance type concerns each of its pools; one naming none, the whole request", async () => {
    const fake = new FakeEc2().reply("CreateFleetCommand", {
      ...meta,
      Errors: [
        fleetError("Server.InsufficientInstanceCapacity", "none", { InstanceType: "c6g.large" }),
        fleetError("UnfulfillableCapacity", "Unable to fulfill capacity"),
      ],
    });
    const cap = adapter(fake);
    const result = await cap.launch(request(cap));
    expect(result.errors.map((e) => [e.code, e.pool])).toEqual([
      ["InsufficientInstanceCapacity", cap.pools[2]],
      ["InsufficientInstanceCapacity", cap.pools[3]],
      ["UnfulfillableCapacity", undefined],
    ]);
    expect(result.requestId).toBeUndefined();
  });

  it("throws a loud config error when the launch template does not exist", async () => {
    const fake = new FakeEc2().reply(
      "CreateFleetCommand",
      sdkError(
        "InvalidLaunchTemplateId.NotFound",
        "The specified launch template, with template ID lt-0e8c754449b27161c, does not exist.",
        400,
        "client",
      ),
    );
    const cap = adapter(fake);
    const err = await cap.launch(request(cap)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CapacityConfigError);
    expect(err).toMatchObject({
      kind: "config",
      providerCode: "InvalidLaunchTemplateId.NotFound",
      code: "CONFIG_INVALID",
    });
    expect((err as Error).message).toMatch(
      /^EC2 CreateFleet refused \(InvalidLaunchTemplateId.NotFound\): The specified launch template.*— check the fleet's launch template/,
    );
  });

  it("throws a loud permission error when the role may not create fleets", async () => {
    const fake = new FakeEc2().reply(
      "CreateFleetCommand",
      sdkError(
        "UnauthorizedOperation",
        "You are not authorized to perform this operation. User: arn:aws:sts::123456789012:assumed-role/shardfleet-scheduler/i-0abc is not authorized to perform: ec2:CreateFleet",
        403,
        "client",
      ),
    );
    const cap = adapter(fake);
    const err = (await cap.launch(request(cap)).catch((e: unknown) => e)) as CapacityConfigError;
    expect(err).toBeInstanceOf(CapacityConfigError);
    expect(err.kind).toBe("permission");
    expect(err.message).toContain("ec2:CreateFleet");
    expect(err.message).toContain("iam:PassRole");
  });

  it("answers a thrown InsufficientInstanceCapacity (a 500) as a capacity error, not a retry", async () => {
    const fake = new FakeEc2().reply(
      "CreateFleetCommand",
      sdkError("InsufficientInstanceCapacity", ICE("c7g.large", "us-east-1a"), 500, "server"),
    );
    const cap = adapter(fake);
    expect(await cap.launch(request(cap))).toEqual({
      launched: [],
      errors: [
        {
          market: "spot",
          code: "InsufficientInstanceCapacity",
          message: ICE("c7g.large", "us-east-1a"),
          kind: "capacity",
        },
      ],
    });
  });

  it("throttling is retryable; the retry of a request carries its token, a new request a new one", async () => {
    const fake = new FakeEc2()
      .reply(
        "CreateFleetCommand",
        sdkError("RequestLimitExceeded", "Request limit exceeded.", 503, "client"),
      )
      .reply("CreateFleetCommand", { ...meta, FleetId: FLEET_ID, Instances: [] })
      .reply(
        "CreateFleetCommand",
        sdkError("InternalError", "An internal error has occurred", 500, "server"),
      );
    const cap = adapter(fake);
    const first = request(cap, { clientToken: newClientToken() });
    await expect(cap.launch(first)).rejects.toBeInstanceOf(RetryableError);
    await cap.launch(first); // the caller's retry: the same request object
    const second = request(cap, { clientToken: newClientToken() });
    await expect(cap.launch(second)).rejects.toThrow(
      /EC2 CreateFleet failed for now \(InternalError\)/,
    );
    const tokens = fake
      .inputs<CreateFleetCommandInput>("CreateFleetCommand")
      .map((i) => i.ClientToken);
    expect(tokens[0]).toBe(first.clientToken);
    expect(tokens[1]).toBe(first.clientToken);
    expect(tokens[2]).toBe(second.clientToken);
    expect(second.clientToken).not.toBe(first.clientToken);
  });

  it("the SDK's own retry of a 5xx resends the same ClientToken (real EC2Client, stub HTTP handler)", async () => {
    const bodies: string[] = [];
    const xml = (s: string) =>
      Readable.from([Buffer.from(`<?xml version="1.0" encoding="UTF-8"?>\n${s}`)]);
    const requestHandler = {
      async handle(req: { body?: unknown }) {
        bodies.push(String(req.body));
        if (bodies.length === 1) {
          return {
            response: {
              statusCode: 500,
              headers: { "content-type": "text/xml;charset=UTF-8" },
              body: xml(
                "<Response><Errors><Error><Code>InternalError</Code><Message>An internal error has occurred</Message></Error></Errors><RequestID>c3d4e5f6-EXAMPLE</RequestID></Response>",
              ),
            },
          };
        }
        return {
          response: {
            statusCode: 200,
            headers: { "content-type": "text/xml;charset=UTF-8" },
            body: xml(`<CreateFleetResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>d4e5f6a7-EXAMPLE</requestId>
  <fleetId>${FLEET_ID}</fleetId>
  <errorSet>
    <item>
      <launchTemplateAndOverrides>
        <launchTemplateSpecification><launchTemplateId>lt-0e8c754449b27161c</launchTemplateId><version>3</version></launchTemplateSpecification>
        <overrides><instanceType>c7g.large</instanceType><subnetId>subnet-4e5f6a7b</subnetId><availabilityZone>us-east-1b</availabilityZone></overrides>
      </launchTemplateAndOverrides>
      <lifecycle>spot</lifecycle>
      <errorCode>InsufficientInstanceCapacity</errorCode>
      <errorMessage>${ICE("c7g.large", "us-east-1b")}</errorMessage>
    </item>
  </errorSet>
  <fleetInstanceSet>
    <item>
      <launchTemplateAndOverrides>
        <launchTemplateSpecification><launchTemplateId>lt-0e8c754449b27161c</launchTemplateId><version>3</version></launchTemplateSpecification>
        <overrides><instanceType>c7g.large</instanceType><subnetId>subnet-0a1b2c3d</subnetId><availabilityZone>us-east-1a</availabilityZone></overrides>
      </launchTemplateAndOverrides>
      <lifecycle>spot</lifecycle>
      <instanceIds><item>i-0e1</item><item>i-0e2</item></instanceIds>
      <instanceType>c7g.large</instanceType>
    </item>
  </fleetInstanceSet>
</CreateFleetResponse>`),
          },
        };
      },
    };
    const ec2 = new EC2Client({
      region: "us-east-1",
      credentials: { accessKeyId: "test", secretAccessKey: "test" },
      requestHandler,
      maxAttempts: 2,
    });
    try {
      const cap = new Ec2Capacity({ ec2, logger: silentLogger(), clock }, OPTIONS);
      const req = request(cap, { count: 5 });
      const result = await cap.launch(req);
      expect(bodies).toHaveLength(2);
      const tokens = bodies.map((b) => new URLSearchParams(b).get("ClientToken"));
      expect(tokens).toEqual([req.clientToken, req.clientToken]);
      const params = new URLSearchParams(bodies[1]);
      expect(params.get("Action")).toBe("CreateFleet");
      expect(params.get("Type")).toBe("instant");
      expect(params.get("SpotOptions.AllocationStrategy")).toBe("price-capacity-optimized");
      expect(result.launched.map((i) => [i.instanceId, i.market, i.availabilityZone])).toEqual([
        ["i-0e1", "spot", "us-east-1a"],
        ["i-0e2", "spot", "us-east-1a"],
      ]);
      expect(result.errors).toEqual([
        expect.objectContaining({ code: "InsufficientInstanceCapacity", pool: cap.pools[1] }),
      ]);
    } finally {
      ec2.destroy();
    }
  });

  it("refuses a malformed request before calling EC2", async () => {
    const fake = new FakeEc2();
    const cap = adapter(fake);
    await expect(cap.launch(request(cap, { clientToken: "x".repeat(65) }))).rejects.toThrow(
      /clientToken must be 1–64/,
    );
    await expect(cap.launch(request(cap, { count: 0 }))).rejects.toThrow(
      /count must be a positive/,
    );
    await expect(cap.launch(request(cap, { pools: [] }))).rejects.toThrow(/pools is empty/);
    expect(fake.calls).toEqual([]);
  });
});

describe("EC2 adapter (mocked EC2 API): terminate and describe", () => {
  it("terminates in calls of at most 1000 ids, each id once", async () => {
    const ids = Array.from({ length: 2500 }, (_, n) => `i-${n.toString(16).padStart(17, "0")}`);
    const fake = new FakeEc2();
    for (let n = 0; n < 3; n++)
      fake.reply("TerminateInstancesCommand", { ...meta, TerminatingInstances: [] });
    await adapter(fake).terminate([...ids, ids[0]!]);
    const calls = fake.inputs<{ InstanceIds: string[] }>("TerminateInstancesCommand");
    expect(calls.map((c) => c.InstanceIds.length)).toEqual([1000, 1000, 500]);
    expect(calls.flatMap((c) => c.InstanceIds)).toEqual(ids);
  });

  it("drops ids EC2 says do not exist and terminates the rest", async () => {
    const fake = new FakeEc2()
      .reply(
        "TerminateInstancesCommand",
        sdkError(
          "InvalidInstanceID.NotFound",
          "The instance ID 'i-0bad' does not exist",
          400,
          "client",
        ),
      )
      .reply("TerminateInstancesCommand", { ...meta })
      // A message that names none of the ids: find the missing ones one by one.
      .reply(
        "TerminateInstancesCommand",
        sdkError("InvalidInstanceID.NotFound", "not found", 400, "client"),
      )
      .reply(
        "TerminateInstancesCommand",
        sdkError("InvalidInstanceID.NotFound", "not found", 400, "client"),
      )
      .reply("TerminateInstancesCommand", { ...meta });
    const cap = adapter(fake);
    await cap.terminate(["i-0a1", "i-0bad", "i-0a2"]);
    await cap.terminate(["i-0ff", "i-0a3"]);
    expect(
      fake.inputs<{ InstanceIds: string[] }>("TerminateInstancesCommand").map((c) => c.InstanceIds),
    ).toEqual([
      ["i-0a1", "i-0bad", "i-0a2"],
      ["i-0a1", "i-0a2"],
      ["i-0ff", "i-0a3"],
      ["i-0ff"],
      ["i-0a3"],
    ]);
  });

  it("a refused terminate is loud", async () => {
    const fake = new FakeEc2().reply(
      "TerminateInstancesCommand",
      sdkError(
        "UnauthorizedOperation",
        "You are not authorized to perform this operation.",
        403,
        "client",
      ),
    );
    await expect(adapter(fake).terminate(["i-0a1"])).rejects.toMatchObject({
      kind: "permission",
      message: expect.stringMatching(/^EC2 TerminateInstances refused \(UnauthorizedOperation\)/),
    });
  });

  it("describes by tags across pages, mapping lifecycle (spot, or absent = on-demand), state and tags", async () => {
    const instance = (id: string, extra: Record<string, unknown>) => ({
      InstanceId: id,
      InstanceType: "c7g.large",
      Placement: { AvailabilityZone: "us-east-1a" },
      LaunchTime: new Date("2025-06-01T11:00:00Z"),
      State: { Code: 16, Name: "running" },
      Tags: [
        { Key: "shardfleet:fleet", Value: "prod" },
        { Key: "shardfleet:operation", Value: "op-7" },
      ],
      ...extra,
    });
    const fake = new FakeEc2()
      .reply("DescribeInstancesCommand", {
        ...meta,
        Reservations: [
          { ReservationId: "r-1", Instances: [instance("i-0s1", { InstanceLifecycle: "spot" })] },
          {
            ReservationId: "r-2",
            Instances: [instance("i-0d1", { State: { Code: 64, Name: "stopping" } })],
          },
        ],
        NextToken: "page-2",
      })
      .reply("DescribeInstancesCommand", {
        ...meta,
        Reservations: [
          {
            ReservationId: "r-3",
            Instances: [
              instance("i-0s2", {
                InstanceLifecycle: "spot",
                State: { Code: 48, Name: "terminated" },
              }),
            ],
          },
        ],
      });
    const out = await adapter(fake).describe({ tags: { "shardfleet:fleet": "prod" } });
    const calls = fake.inputs<{ Filters: unknown; MaxResults: number; NextToken?: string }>(
      "DescribeInstancesCommand",
    );
    expect(calls).toEqual([
      { Filters: [{ Name: "tag:shardfleet:fleet", Values: ["prod"] }], MaxResults: 1000 },
      {
        Filters: [{ Name: "tag:shardfleet:fleet", Values: ["prod"] }],
        MaxResults: 1000,
        NextToken: "page-2",
      },
    ]);
    expect(out.map((i) => [i.instanceId, i.market, i.state])).toEqual([
      ["i-0s1", "spot", "running"],
      ["i-0d1", "on-demand", "stopped"],
      ["i-0s2", "spot", "terminated"],
    ]);
    expect(out[0]).toEqual({
      instanceId: "i-0s1",
      market: "spot",
      instanceType: "c7g.large",
      availabilityZone: "us-east-1a",
      state: "running",
      launchedAt: Date.parse("2025-06-01T11:00:00Z"),
      tags: { "shardfleet:fleet": "prod", "shardfleet:operation": "op-7" },
    });
  });

  it("refuses to describe without a tag (an orphan sweep would see the whole account)", async () => {
    const fake = new FakeEc2();
    await expect(adapter(fake).describe({ tags: {} })).rejects.toThrow(/at least one tag/);
    expect(fake.calls).toEqual([]);
  });
});

describe("EC2 adapter (mocked EC2 API): configuration and error codes", () => {
  it("classifies EC2 error codes", () => {
    const cases: [string, string][] = [
      ["InsufficientInstanceCapacity", "capacity"],
      ["Server.InsufficientInstanceCapacity", "capacity"],
      ["UnfulfillableCapacity", "capacity"],
      ["MaxSpotInstanceCountExceeded", "capacity"],
      ["SpotMaxPriceTooLow", "capacity"],
      ["InsufficientCapacity", "capacity"],
      ["VcpuLimitExceeded", "capacity"],
      ["UnauthorizedOperation", "permission"],
      ["OptInRequired", "permission"],
      ["AuthFailure.ServiceLinkedRoleCreationNotPermitted", "permission"],
      ["InvalidLaunchTemplateId.NotFound", "config"],
      ["InvalidLaunchTemplateName.NotFoundException", "config"],
      ["InvalidParameterValue", "config"],
      ["InvalidSubnetID.NotFound", "config"],
      ["Unsupported", "config"],
      ["SomethingNew", "other"],
    ];
    for (const [code, kind] of cases)
      expect([code, classifyEc2ErrorCode(code)]).toEqual([code, kind]);
  });

  it("refuses a configuration without exactly one launch template reference or without instance types", () => {
    const make = (o: Partial<Ec2CapacityOptions>) => () =>
      adapter(new FakeEc2(), { ...OPTIONS, ...o });
    expect(make({ launchTemplate: {} })).toThrow(ConfigError);
    expect(make({ launchTemplate: { id: "lt-1", name: "n" } })).toThrow(
      /exactly one of launchTemplate/,
    );
    expect(make({ instanceTypes: [] })).toThrow(/instanceTypes is empty/);
    expect(make({ terminateBatchSize: 1001 })).toThrow(/terminateBatchSize/);
  });
});
