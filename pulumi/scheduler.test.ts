/**
 * The scheduler component's API front door in the modes the whole-stack test (index.test.ts,
 * HTTPS with a domain and a Route 53 zone) does not run: plain HTTP for dev stacks, HTTPS
 * without a domain, a domain without a zone, and the longest name prefix; and a stack without
 * an API token (index.test.ts sets one). Each variant is one component built under Pulumi's
 * mocks; the checks read what it asked AWS for.
 */
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import type { ApiSettings } from "./config.ts";
import { SchedulerIdentityComponent } from "./iam.ts";
import { SchedulerComponent } from "./scheduler.ts";
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

beforeAll(async () => {
  await pulumi.runtime.setMocks(recordingMocks(recorded), "shardfleet", "test", false);
  for (const [variant, api] of Object.entries(VARIANTS) as [Variant, ApiSettings][]) {
    const scheduler = new SchedulerComponent(variant, {
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
    });
    endpoints.set(variant, {
      apiEndpoint: await resolve(scheduler.apiEndpoint),
      apiLoadBalancerDnsName: await resolve(scheduler.apiLoadBalancerDnsName),
    });
  }
  // Its identity, built as index.ts builds it when shardfleet:apiToken is unset.
  new SchedulerIdentityComponent("tokenless-scheduler", {
    bucketArn: "arn:aws:s3:::bucket",
    fleetName: "bucket",
    queueArns: [`arn:aws:sqs:${REGION}:${ACCOUNT}:work`],
    spotEventsQueueArn: `arn:aws:sqs:${REGION}:${ACCOUNT}:spot-events`,
    workerRoleArn: `arn:aws:iam::${ACCOUNT}:role/worker`,
    launchTemplateArn: `arn:aws:ec2:${REGION}:${ACCOUNT}:launch-template/lt-0123456789abcdef0`,
    amiId: "ami-0123456789abcdef0",
    subnetIds: ["subnet-0123456789abcdef0"],
    workerSecurityGroupArn: `arn:aws:ec2:${REGION}:${ACCOUNT}:security-group/sg-0123`,
    region: REGION,
    accountId: ACCOUNT,
    logGroupArn: `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:shardfleet-logs`,
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

describe("without an API token", () => {
  it("names no token parameter in the scheduler's settings, and grants no SSM read", () => {
    for (const variant of Object.keys(VARIANTS) as Variant[]) {
      const [instance] = of(variant, "aws:ec2/instance:Instance");
      expect(instance?.userData).toContain("SHARDFLEET_CAPACITY=ec2");
      expect(instance?.userData).not.toContain("SHARDFLEET_API_TOKEN");
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
