/**
 * The scheduler component's API front door in the modes the whole-stack test (index.test.ts,
 * HTTPS with a domain and a Route 53 zone) does not run: plain HTTP for dev stacks, HTTPS
 * without a domain, a domain without a zone, and the longest name prefix; a stack without
 * an API token (index.test.ts sets one), in another partition; and the resource options the
 * mocks do not record, read through a transformation. Each variant is one component built
 * under Pulumi's mocks; the checks read what it asked AWS for.
 */
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../src/scheduler/api/app.ts";
import { KEEP_ALIVE_TIMEOUT_MS } from "../src/scheduler/api/keep-alive.ts";
import type { OperationService } from "../src/scheduler/operations.ts";
import { silentLogger } from "../src/shared/logger.ts";
import type { ApiSettings } from "./config.ts";
import { SchedulerIdentityComponent } from "./iam.ts";
import { IDLE_TIMEOUT_SECONDS, SchedulerComponent } from "./scheduler.ts";
import { ACCOUNT, type Inputs, REGION, type Recorded, recordingMocks, resolve } from "./testing.ts";

const ADMIN_CIDR = "203.0.113.7/32";
const CERTIFICATE_ARN = `arn:aws:acm:${REGION}:${ACCOUNT}:certificate/0a1b2c3d-4e5f-6789-abcd-ef0123456789`;
const DOMAIN = "shardfleet.example.com";

/** One scheduler per API mode, named by the variant. */
const VARIANTS = {
  plain: { listener: { protocol: "HTTP" } },
  bare: { listener: { protocol: "HTTPS", certificateArn: CERTIFICATE_ARN } },
  named: { listener: { protocol: "HTTPS", certificateArn: CERTIFICATE_ARN }, domainName: DOMAIN },
  // The longest name prefix config allows (24 characters), as index.ts names the component.
  "abcdefghijklmnopqrstuvwx-scheduler": { listener: { protocol: "HTTP" } },
} satisfies Record<string, ApiSettings>;
type Variant = keyof typeof VARIANTS;

const recorded: Recorded[] = [];
const endpoints = new Map<Variant, { apiEndpoint: string; apiLoadBalancerDnsName: string }>();
/** The options each child resource was registered with, by type and name. */
const options = new Map<string, pulumi.CustomResourceOptions>();
/** The partition and region of the tokenless identity: not the mocks' own. */
const OTHER_PARTITION = "aws-cn";
const OTHER_REGION = "cn-north-1";

beforeAll(async () => {
  await pulumi.runtime.setMocks(recordingMocks(recorded), "shardfleet", "test", false);
  for (const [variant, api] of Object.entries(VARIANTS) as [Variant, ApiSettings][]) {
    const scheduler = new SchedulerComponent(
      variant,
      {
        amiId: "ami-0123456789abcdef0",
        instanceType: "t3.small",
        instanceProfileName: "scheduler-profile",
        vpcId: "vpc-0123456789abcdef0",
        subnetIds: ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
        adminCidr: ADMIN_CIDR,
        api,
        settings: {
          region: REGION,
          bucket: "bucket",
          workQueueUrl: "https://sqs.example/work",
          stragglerQueueUrl: "https://sqs.example/straggler",
          dlqUrl: "https://sqs.example/dlq",
          spotEventsQueueUrl: "https://sqs.example/spot-events",
          launchTemplateId: "lt-0123456789abcdef0",
          instanceTypes: ["c7i.large"],
          visibilityTimeoutSeconds: 60,
          logGroupName: "shardfleet-logs",
        },
        tags: { project: "shardfleet", stack: "test" },
      },
      {
        // Transformations run in the SDK, so they see the options the mocks are never given.
        transformations: [
          ({ type, name, opts }) => {
            options.set(`${type}::${name}`, opts as pulumi.CustomResourceOptions);
            return undefined;
          },
        ],
      },
    );
    endpoints.set(variant, {
      apiEndpoint: await resolve(scheduler.apiEndpoint),
      apiLoadBalancerDnsName: await resolve(scheduler.apiLoadBalancerDnsName),
    });
  }
  // Its identity, built as index.ts builds it when shardfleet:apiToken is unset, in China.
  const arn = (service: string, resource: string) =>
    `arn:${OTHER_PARTITION}:${service}:${OTHER_REGION}:${ACCOUNT}:${resource}`;
  new SchedulerIdentityComponent("tokenless-scheduler", {
    bucketArn: `arn:${OTHER_PARTITION}:s3:::bucket`,
    fleetName: "bucket",
    queueArns: [arn("sqs", "work")],
    spotEventsQueueArn: arn("sqs", "spot-events"),
    workerRoleArn: `arn:${OTHER_PARTITION}:iam::${ACCOUNT}:role/worker`,
    launchTemplateArn: arn("ec2", "launch-template/lt-0123456789abcdef0"),
    amiId: "ami-0123456789abcdef0",
    subnetIds: ["subnet-0123456789abcdef0"],
    workerSecurityGroupArn: arn("ec2", "security-group/sg-0123"),
    region: OTHER_REGION,
    accountId: ACCOUNT,
    partition: OTHER_PARTITION,
    logGroupArn: arn("logs", "log-group:shardfleet-logs"),
    tags: { project: "shardfleet", stack: "test" },
  });
  await pulumi.runtime.disconnect();
});

function of(variant: Variant, type: string): Inputs[] {
  // The long variant's ELB names are cut short, so match on its first 20 characters.
  return recorded
    .filter((r) => r.type === type && r.name.startsWith(variant.slice(0, 20)))
    .map((r) => r.inputs);
}

describe("plain HTTP (apiPlainHttp, dev stacks)", () => {
  it("forwards HTTP on 80 to the scheduler and has no HTTPS listener", () => {
    const listeners = of("plain", "aws:lb/listener:Listener");
    expect(listeners).toHaveLength(1);
    expect(listeners[0]).toMatchObject({
      port: 80,
      protocol: "HTTP",
      defaultActions: [
        { type: "forward", targetGroupArn: expect.stringContaining("targetgroup/") },
      ],
    });
    expect(listeners[0]?.certificateArn).toBeUndefined();
  });

  it("admits 80 only, from the admin CIDR only", () => {
    const [alb] = of("plain", "aws:ec2/securityGroup:SecurityGroup").filter((g) =>
      (g.ingress as Inputs[]).some((r) => r.cidrBlocks !== undefined),
    );
    expect(alb?.ingress).toEqual([
      expect.objectContaining({ fromPort: 80, toPort: 80, cidrBlocks: [ADMIN_CIDR] }),
    ]);
  });

  it("says http:// in the endpoint", () => {
    const { apiEndpoint, apiLoadBalancerDnsName } = endpoints.get("plain")!;
    expect(apiEndpoint).toBe(`http://${apiLoadBalancerDnsName}`);
  });
});

describe("HTTPS without apiDomainName", () => {
  it("points the endpoint at the load balancer's own name and creates no DNS record", () => {
    const { apiEndpoint, apiLoadBalancerDnsName } = endpoints.get("bare")!;
    expect(apiLoadBalancerDnsName).toMatch(/\.elb\.amazonaws\.com$/);
    expect(apiEndpoint).toBe(`https://${apiLoadBalancerDnsName}`);
    expect(of("bare", "aws:route53/record:Record")).toEqual([]);
  });
});

describe("HTTPS with apiDomainName but no apiHostedZoneId", () => {
  it("points the endpoint at the domain and leaves its DNS record to the operator", () => {
    expect(endpoints.get("named")?.apiEndpoint).toBe(`https://${DOMAIN}`);
    expect(of("named", "aws:route53/record:Record")).toEqual([]);
    const ports = of("named", "aws:lb/listener:Listener").map((l) => l.port);
    expect(ports.sort((a, b) => a - b)).toEqual([80, 443]);
  });
});

describe("names", () => {
  it("keep load balancer and target group names within 32 characters with Pulumi's suffix", () => {
    const elb = recorded.filter((r) =>
      ["aws:lb/loadBalancer:LoadBalancer", "aws:lb/targetGroup:TargetGroup"].includes(r.type),
    );
    expect(elb).toHaveLength(2 * Object.keys(VARIANTS).length);
    for (const r of elb) expect(`${r.name}-abcdefg`.length, r.name).toBeLessThanOrEqual(32);
  });
});

describe("replacing the scheduler instance", () => {
  it("is an Auto Scaling group of one that terminates the old instance first", () => {
    for (const variant of Object.keys(VARIANTS) as Variant[]) {
      const [group] = of(variant, "aws:autoscaling/group:Group");
      expect(group, variant).toMatchObject({
        minSize: 1,
        maxSize: 1,
        desiredCapacity: 1,
        healthCheckType: "ELB",
        // A refresh never runs two: the old instance goes, then the new one comes.
        instanceRefresh: {
          strategy: "Rolling",
          preferences: { minHealthyPercentage: 0, maxHealthyPercentage: 100 },
        },
      });
      // The group, not a fixed instance: a dead scheduler instance is replaced by it.
      expect(of(variant, "aws:ec2/instance:Instance"), variant).toEqual([]);
      expect(options.get(`aws:autoscaling/group:Group::${variant}-group`), variant).toBeDefined();
    }
    // No resource is deleted before its replacement: the group replaces the instance, the load
    // balancer and its listeners keep the endpoint, and the scheduler lease (not the order of
    // replacement) keeps two schedulers from acting on one fleet.
    const deletedFirst = [...options].filter(([, o]) => o.deleteBeforeReplace);
    expect(deletedFirst).toEqual([]);
  });
});

describe("idle connections", () => {
  it("are closed by the load balancer before the scheduler's server would close them", async () => {
    expect(IDLE_TIMEOUT_SECONDS * 1000).toBeLessThan(KEEP_ALIVE_TIMEOUT_MS);
    for (const variant of Object.keys(VARIANTS) as Variant[]) {
      expect(of(variant, "aws:lb/loadBalancer:LoadBalancer")[0]?.idleTimeout).toBe(
        IDLE_TIMEOUT_SECONDS,
      );
    }
    // The constant reaches the Node server fastify creates (no route is called).
    const app = buildApp({
      operations: {} as OperationService,
      logger: silentLogger(),
      maxUploadBytes: 1024,
    });
    try {
      await app.ready();
      expect(app.server.keepAliveTimeout).toBe(KEEP_ALIVE_TIMEOUT_MS);
    } finally {
      await app.close();
    }
  });
});

describe("in another partition", () => {
  it("builds every EC2 ARN of the scheduler policy with the stack's partition", () => {
    const policy = recorded.find(
      (r) => r.type === "aws:iam/rolePolicy:RolePolicy" && r.name === "tokenless-scheduler-policy",
    );
    const statements = JSON.parse(policy?.inputs.policy).Statement as {
      Resource: string | string[];
    }[];
    const resources = statements.flatMap((s) => s.Resource).filter((r) => r !== "*");
    expect(resources.filter((r) => r.includes(":ec2:")).length).toBeGreaterThanOrEqual(8);
    for (const resource of resources) {
      expect(resource).toMatch(new RegExp(`^arn:${OTHER_PARTITION}:`));
    }
    expect(resources).toContain(
      `arn:${OTHER_PARTITION}:ec2:${OTHER_REGION}::image/ami-0123456789abcdef0`,
    );
  });
});

describe("without an API token", () => {
  it("names no token parameter in the scheduler's settings, and grants no SSM read", () => {
    for (const variant of Object.keys(VARIANTS) as Variant[]) {
      const [template] = of(variant, "aws:ec2/launchTemplate:LaunchTemplate");
      const userData = Buffer.from(template?.userData ?? "", "base64").toString("utf8");
      expect(userData).toContain("SHARDFLEET_CAPACITY=ec2");
      expect(userData).not.toContain("SHARDFLEET_API_TOKEN");
      // Listening beyond loopback without tokens needs saying so (the scheduler then warns).
      expect(userData.split("\n")).toContain("SHARDFLEET_API_ALLOW_ANONYMOUS=true");
    }
    const policy = recorded.find(
      (r) => r.type === "aws:iam/rolePolicy:RolePolicy" && r.name === "tokenless-scheduler-policy",
    );
    const actions = (
      JSON.parse(policy?.inputs.policy).Statement as { Action: string | string[] }[]
    ).flatMap((s) => s.Action);
    expect(actions.length).toBeGreaterThan(0);
    expect(actions.filter((a) => /^(ssm|kms):/.test(a))).toEqual([]);
  });
});
