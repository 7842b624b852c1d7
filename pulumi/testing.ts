/**
 * Pulumi mocks for the stack's unit tests: they record every resource the program asks for
 * and answer with what the provider would add (ids, names, ARNs, URLs, DNS names). No CLI, no
 * cloud. Each test file calls `setMocks` with these before it builds resources.
 */
import type * as pulumi from "@pulumi/pulumi";

// biome-ignore lint/suspicious/noExplicitAny: resource inputs are untyped property bags.
export type Inputs = Record<string, any>;

export interface Recorded {
  readonly type: string;
  readonly name: string;
  readonly inputs: Inputs;
  readonly custom: boolean;
}

export const ACCOUNT = "123456789012";
export const REGION = "us-east-1";
const PARTITION = "aws";
/** The ALB's canonical hosted zone in us-east-1, which an alias record names. */
export const ALB_ZONE_ID = "Z35SXDOTRQ7X7K";

/** What the provider would add to the inputs: ids, names, ARNs and URLs. */
function mockResource(args: pulumi.runtime.MockResourceArgs): pulumi.runtime.MockResourceResult {
  const inputs: Inputs = args.inputs;
  const name: string = inputs.name ?? `${args.name}-physical`;
  switch (args.type) {
    case "aws:s3/bucket:Bucket": {
      const bucket: string = inputs.bucket ?? `${args.name}-physical`;
      return { id: bucket, state: { ...inputs, bucket, arn: `arn:aws:s3:::${bucket}` } };
    }
    case "aws:sqs/queue:Queue":
      return {
        id: `https://sqs.${REGION}.amazonaws.com/${ACCOUNT}/${name}`,
        state: {
          ...inputs,
          name,
          arn: `arn:aws:sqs:${REGION}:${ACCOUNT}:${name}`,
          url: `https://sqs.${REGION}.amazonaws.com/${ACCOUNT}/${name}`,
        },
      };
    case "aws:iam/role:Role":
      return { id: name, state: { ...inputs, name, arn: `arn:aws:iam::${ACCOUNT}:role/${name}` } };
    case "aws:iam/instanceProfile:InstanceProfile":
      return {
        id: name,
        state: { ...inputs, name, arn: `arn:aws:iam::${ACCOUNT}:instance-profile/${name}` },
      };
    case "aws:ec2/securityGroup:SecurityGroup":
      return {
        id: `sg-${args.name}`,
        state: {
          ...inputs,
          arn: `arn:aws:ec2:${REGION}:${ACCOUNT}:security-group/sg-${args.name}`,
        },
      };
    case "aws:ec2/launchTemplate:LaunchTemplate":
      return {
        id: "lt-0123456789abcdef0",
        state: {
          ...inputs,
          arn: `arn:aws:ec2:${REGION}:${ACCOUNT}:launch-template/lt-0123456789abcdef0`,
        },
      };
    case "aws:ec2/instance:Instance":
      return { id: "i-0123456789abcdef0", state: inputs };
    case "aws:lb/loadBalancer:LoadBalancer": {
      const arn = `arn:aws:elasticloadbalancing:${REGION}:${ACCOUNT}:loadbalancer/app/${name}/0123456789abcdef`;
      return {
        id: arn,
        state: {
          ...inputs,
          name,
          arn,
          dnsName: `${name}-1234567890.${REGION}.elb.amazonaws.com`,
          zoneId: ALB_ZONE_ID,
        },
      };
    }
    case "aws:lb/targetGroup:TargetGroup": {
      const arn = `arn:aws:elasticloadbalancing:${REGION}:${ACCOUNT}:targetgroup/${name}/0123456789abcdef`;
      return { id: arn, state: { ...inputs, name, arn } };
    }
    case "aws:cloudwatch/logGroup:LogGroup":
      // As @pulumi/aws v7 reports it: without the `:*` suffix the CloudWatch API adds.
      return {
        id: name,
        state: { ...inputs, name, arn: `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:${name}` },
      };
    case "aws:ssm/parameter:Parameter":
      // A name without a leading "/" follows "parameter/" in the ARN.
      return {
        id: name,
        state: { ...inputs, name, arn: `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/${name}` },
      };
    case "aws:cloudwatch/eventRule:EventRule":
      return {
        id: name,
        state: { ...inputs, name, arn: `arn:aws:events:${REGION}:${ACCOUNT}:rule/${name}` },
      };
    default:
      return { id: `${args.name}-id`, state: inputs };
  }
}

/** Mocks that append every registered resource to `recorded`. */
export function recordingMocks(recorded: Recorded[]): pulumi.runtime.Mocks {
  return {
    newResource(args) {
      recorded.push({
        type: args.type,
        name: args.name,
        inputs: args.inputs,
        custom: args.custom ?? true,
      });
      return mockResource(args);
    },
    // The region, the account, the partition and the AZs; policies themselves are built with
    // jsonStringify.
    call(args) {
      switch (args.token) {
        case "aws:index/getRegion:getRegion":
          return { name: REGION, region: REGION, id: REGION };
        case "aws:index/getCallerIdentity:getCallerIdentity":
          return { accountId: ACCOUNT, arn: `arn:aws:iam::${ACCOUNT}:user/test`, userId: "test" };
        case "aws:index/getPartition:getPartition":
          return {
            partition: PARTITION,
            dnsSuffix: "amazonaws.com",
            reverseDnsPrefix: "com.amazonaws",
            id: PARTITION,
          };
        case "aws:index/getAvailabilityZones:getAvailabilityZones":
          return { names: [`${REGION}a`, `${REGION}b`, `${REGION}c`], zoneIds: [] };
        default:
          throw new Error(`unexpected invoke ${args.token}`);
      }
    },
  };
}

export function resolve<T>(output: pulumi.Output<T>): Promise<T> {
  return new Promise((done) => output.apply(done));
}
