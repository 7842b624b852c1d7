/**
 * Unit tests of the stack with Pulumi's mocks: no CLI, no cloud. The mocks record what the
 * program asks for; the tests read those inputs (and the stack outputs) as AWS would get them.
 * Config is set to non-default values before the program is imported, so each check also shows
 * that the setting flows through.
 */
import { readFileSync } from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import { FLEET_TAGS } from "../src/shared/capacity.ts";
import { loadConfig } from "../src/shared/config.ts";
import { CONFIG_KEYS, DEFAULT_SETTINGS, readDeploymentSettings, readSettings } from "./config.ts";

type Program = typeof import("./index.ts");
// biome-ignore lint/suspicious/noExplicitAny: resource inputs are untyped property bags.
type Inputs = Record<string, any>;

interface Recorded {
  readonly type: string;
  readonly name: string;
  readonly inputs: Inputs;
  readonly custom: boolean;
}

const ACCOUNT = "123456789012";
const REGION = "us-east-1";
const MAX_RECEIVE_COUNT = 5;
const EXPIRATION_DAYS = 3;
const VISIBILITY_TIMEOUT = 90;
const AMI = "ami-0123456789abcdef0";
const ADMIN_CIDR = "203.0.113.7/32";
const SCHEDULER_IP = "198.51.100.20";

/** Resources that AWS cannot tag; every other resource must carry the stack's tags. */
const UNTAGGABLE = new Set([
  "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
  "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
  "aws:s3/bucketVersioning:BucketVersioning",
  "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
  "aws:s3/bucketPolicy:BucketPolicy",
  "aws:iam/rolePolicy:RolePolicy",
  "aws:ec2/routeTableAssociation:RouteTableAssociation",
]);

const recorded: Recorded[] = [];

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
      return { id: "i-0123456789abcdef0", state: { ...inputs, publicIp: SCHEDULER_IP } };
    default:
      return { id: `${args.name}-id`, state: inputs };
  }
}

const mocks: pulumi.runtime.Mocks = {
  newResource(args) {
    recorded.push({
      type: args.type,
      name: args.name,
      inputs: args.inputs,
      custom: args.custom ?? true,
    });
    return mockResource(args);
  },
  // The region, the account and the AZs; policies themselves are built with jsonStringify.
  call(args) {
    switch (args.token) {
      case "aws:index/getRegion:getRegion":
        return { name: REGION, region: REGION, id: REGION };
      case "aws:index/getCallerIdentity:getCallerIdentity":
        return { accountId: ACCOUNT, arn: `arn:aws:iam::${ACCOUNT}:user/test`, userId: "test" };
      case "aws:index/getAvailabilityZones:getAvailabilityZones":
        return { names: [`${REGION}a`, `${REGION}b`, `${REGION}c`], zoneIds: [] };
      default:
        throw new Error(`unexpected invoke ${args.token}`);
    }
  },
};

function resolve<T>(output: pulumi.Output<T>): Promise<T> {
  return new Promise((done) => output.apply(done));
}

function only(type: string, nameEndsWith?: string): Recorded {
  const found = recorded.filter(
    (r) => r.type === type && (nameEndsWith === undefined || r.name.endsWith(nameEndsWith)),
  );
  expect(found, `${type} ${nameEndsWith ?? ""}`).toHaveLength(1);
  return found[0]!;
}

interface Statement {
  Sid?: string;
  Effect: string;
  Action: string | string[];
  Resource: string | string[];
  Condition?: unknown;
}

const list = (v: string | string[]): string[] => (Array.isArray(v) ? v : [v]);

let program: Program;
let out: {
  bucketName: string;
  workQueueUrl: string;
  stragglerQueueUrl: string;
  dlqUrl: string;
  dlqArn: string;
  workerInstanceProfileName: string;
  workerRoleArn: string;
  apiEndpoint: string;
  launchTemplateId: string;
  subnetIds: string[];
  vpcId: string;
};
/** Every registered resource's URN, which encodes its parent chain. */
let urns: string[];

beforeAll(async () => {
  await pulumi.runtime.setMocks(mocks, "shardfleet", "test", false);
  pulumi.runtime.setAllConfig({
    "shardfleet:namePrefix": "sf-test",
    "shardfleet:maxReceiveCount": String(MAX_RECEIVE_COUNT),
    "shardfleet:tempObjectExpirationDays": String(EXPIRATION_DAYS),
    "shardfleet:visibilityTimeoutSeconds": String(VISIBILITY_TIMEOUT),
    "shardfleet:instanceTypes": JSON.stringify(["c7a.large", "m7a.large"]),
    "shardfleet:workerAmiId": AMI,
    "shardfleet:adminCidr": ADMIN_CIDR,
  });
  const monitor = pulumi.runtime.getMonitor() as unknown as {
    getRegisteredResources(): Map<string, unknown>;
  };

  program = await import("./index.ts");
  out = {
    bucketName: await resolve(program.bucketName),
    workQueueUrl: await resolve(program.workQueueUrl),
    stragglerQueueUrl: await resolve(program.stragglerQueueUrl),
    dlqUrl: await resolve(program.dlqUrl),
    dlqArn: await resolve(program.dlqArn),
    workerInstanceProfileName: await resolve(program.workerInstanceProfileName),
    workerRoleArn: await resolve(program.workerRoleArn),
    apiEndpoint: await resolve(program.apiEndpoint),
    launchTemplateId: await resolve(program.launchTemplateId),
    subnetIds: await resolve(program.subnetIds),
    vpcId: await resolve(program.vpcId),
  };
  // Some resources (the policies) feed no output: wait until every registration is done.
  await pulumi.runtime.disconnect();
  urns = [...monitor.getRegisteredResources().keys()];
});

describe("stack outputs", () => {
  it("exports the bucket, the three queues, the DLQ ARN and the worker profile", () => {
    expect(out.bucketName).toMatch(/^sf-test-bucket/);
    expect(out.workQueueUrl).toMatch(/^https:\/\/sqs\..+\/sf-test-work/);
    expect(out.stragglerQueueUrl).toMatch(/\/sf-test-straggler/);
    expect(out.dlqUrl).toMatch(/\/sf-test-dlq/);
    expect(out.dlqArn).toMatch(/^arn:aws:sqs:.+:sf-test-dlq/);
    expect(out.workerInstanceProfileName).toMatch(/^sf-test-worker-profile/);
    expect(out.workerRoleArn).toMatch(/^arn:aws:iam::\d+:role\/sf-test-worker-role/);
    expect(program.instanceTypes).toEqual(["c7a.large", "m7a.large"]);
  });

  it("exports the API endpoint, the launch template, the VPC and its subnets", () => {
    expect(out.apiEndpoint).toBe(`http://${SCHEDULER_IP}:8080`);
    expect(out.launchTemplateId).toBe("lt-0123456789abcdef0");
    expect(out.subnetIds).toEqual(["sf-test-public-0-id", "sf-test-public-1-id"]);
    expect(out.vpcId).toBe("sf-test-vpc-id");
  });
});

describe("queues", () => {
  it("redrive the work and straggler queues to the DLQ after the configured receive count", () => {
    for (const suffix of ["-work", "-straggler"]) {
      const queue = only("aws:sqs/queue:Queue", suffix);
      expect(JSON.parse(queue.inputs.redrivePolicy)).toEqual({
        deadLetterTargetArn: out.dlqArn,
        maxReceiveCount: MAX_RECEIVE_COUNT,
      });
    }
    expect(only("aws:sqs/queue:Queue", "-dlq").inputs.redrivePolicy).toBeUndefined();
  });

  it("long-poll, encrypt, use the configured visibility timeout, and keep dead letters longer", () => {
    const dlq = only("aws:sqs/queue:Queue", "-dlq").inputs;
    for (const suffix of ["-work", "-straggler", "-dlq"]) {
      const q = only("aws:sqs/queue:Queue", suffix).inputs;
      expect(q.receiveWaitTimeSeconds).toBe(20);
      expect(q.sqsManagedSseEnabled).toBe(true);
      expect(q.visibilityTimeoutSeconds).toBe(VISIBILITY_TIMEOUT);
      expect(q.fifoQueue).toBeUndefined();
      if (suffix !== "-dlq")
        expect(q.messageRetentionSeconds).toBeLessThan(dlq.messageRetentionSeconds);
    }
    expect(dlq.messageRetentionSeconds).toBe(14 * 24 * 3600);
  });
});

describe("bucket", () => {
  it("blocks all public access", () => {
    const block = only("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs;
    expect(block).toMatchObject({
      bucket: out.bucketName,
      blockPublicAcls: true,
      blockPublicPolicy: true,
      ignorePublicAcls: true,
      restrictPublicBuckets: true,
    });
  });

  it("encrypts with SSE-S3, keeps versioning off and denies plain HTTP", () => {
    const sse = only(
      "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    ).inputs;
    expect(sse.bucket).toBe(out.bucketName);
    expect(sse.rules).toEqual([{ applyServerSideEncryptionByDefault: { sseAlgorithm: "AES256" } }]);

    const versioning = only("aws:s3/bucketVersioning:BucketVersioning").inputs;
    expect(versioning.versioningConfiguration.status).toBe("Disabled");

    const policy = JSON.parse(only("aws:s3/bucketPolicy:BucketPolicy").inputs.policy);
    expect(policy.Statement).toEqual([
      expect.objectContaining({
        Effect: "Deny",
        Condition: { Bool: { "aws:SecureTransport": "false" } },
      }),
    ]);
  });

  it("expires operations/ after the configured days and aborts stale multipart uploads", () => {
    const lifecycle = only("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration");
    expect(lifecycle.inputs.bucket).toBe(out.bucketName);
    const rules: Inputs[] = lifecycle.inputs.rules;
    expect(rules.every((r) => r.status === "Enabled")).toBe(true);

    const expire = rules.find((r) => r.expiration !== undefined);
    expect(expire?.filter).toEqual({ prefix: "operations/" });
    expect(expire?.expiration).toEqual({ days: EXPIRATION_DAYS });

    const abort = rules.find((r) => r.abortIncompleteMultipartUpload !== undefined);
    expect(abort?.abortIncompleteMultipartUpload).toEqual({ daysAfterInitiation: 1 });
    // No prefix: parts left anywhere in the bucket are cleaned up.
    expect(abort?.filter?.prefix ?? "").toBe("");
  });
});

describe("worker identity", () => {
  const bucketArn = () => `arn:aws:s3:::${out.bucketName}`;
  const queueArns = () =>
    ["-work", "-straggler", "-dlq"].map(
      (s) => `arn:aws:sqs:${REGION}:${ACCOUNT}:${only("aws:sqs/queue:Queue", s).name}-physical`,
    );

  it("is a role only EC2 can assume, wrapped in the exported instance profile", () => {
    const role = only("aws:iam/role:Role", "worker-role");
    expect(JSON.parse(role.inputs.assumeRolePolicy).Statement).toEqual([
      { Effect: "Allow", Principal: { Service: "ec2.amazonaws.com" }, Action: "sts:AssumeRole" },
    ]);
    const profile = only("aws:iam/instanceProfile:InstanceProfile", "worker-profile");
    expect(profile.inputs.role).toBe(`${role.name}-physical`);
    expect(`${profile.name}-physical`).toBe(out.workerInstanceProfileName);
    expect(recorded.filter((r) => r.type.startsWith("aws:iam/rolePolicyAttachment"))).toEqual([]);
    expect(role.inputs.managedPolicyArns).toBeUndefined();
  });

  it("grants only the listed actions, each on its own resources", () => {
    const rolePolicy = only("aws:iam/rolePolicy:RolePolicy", "worker-policy");
    expect(rolePolicy.inputs.role).toBe(
      `${only("aws:iam/role:Role", "worker-role").name}-physical`,
    );
    const statements: Statement[] = JSON.parse(rolePolicy.inputs.policy).Statement;

    const grants = statements.map((s) => ({
      effect: s.Effect,
      actions: list(s.Action).sort(),
      resources: list(s.Resource).sort(),
      condition: s.Condition,
    }));
    expect(grants).toEqual(
      [
        {
          effect: "Allow",
          actions: [
            "sqs:ChangeMessageVisibility",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
            "sqs:ReceiveMessage",
            "sqs:SendMessage",
          ],
          resources: queueArns().sort(),
          condition: undefined,
        },
        {
          effect: "Allow",
          actions: ["s3:ListBucket"],
          resources: [bucketArn()],
          condition: undefined,
        },
        {
          effect: "Allow",
          actions: ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
          resources: [`${bucketArn()}/operations/*`],
          condition: undefined,
        },
      ].map((g) => expect.objectContaining(g)),
    );
    expect(grants).toHaveLength(3);

    for (const grant of grants) {
      for (const action of grant.actions) expect(action).not.toMatch(/\*/);
      for (const resource of grant.resources) expect(resource).not.toBe("*");
    }
  });
});

describe("network", () => {
  it("spreads two public subnets over two AZs behind an internet gateway, with no NAT", () => {
    const subnets = recorded.filter((r) => r.type === "aws:ec2/subnet:Subnet");
    expect(subnets.map((s) => s.inputs.availabilityZone)).toEqual([`${REGION}a`, `${REGION}b`]);
    for (const subnet of subnets) {
      expect(subnet.inputs.vpcId).toBe(out.vpcId);
      expect(subnet.inputs.mapPublicIpOnLaunch).toBe(true);
    }
    const gateway = only("aws:ec2/internetGateway:InternetGateway");
    const table = only("aws:ec2/routeTable:RouteTable").inputs;
    expect(table.routes).toEqual([{ cidrBlock: "0.0.0.0/0", gatewayId: `${gateway.name}-id` }]);
    const associations = recorded.filter(
      (r) => r.type === "aws:ec2/routeTableAssociation:RouteTableAssociation",
    );
    expect(associations.map((a) => a.inputs.subnetId).sort()).toEqual(out.subnetIds);
    expect(recorded.filter((r) => r.type === "aws:ec2/natGateway:NatGateway")).toEqual([]);
  });

  it("gives workers a security group with no inbound rule and all outbound", () => {
    const sg = only("aws:ec2/securityGroup:SecurityGroup", "worker-sg").inputs;
    expect(sg.vpcId).toBe(out.vpcId);
    expect(sg.ingress).toEqual([]);
    expect(sg.egress).toEqual([
      expect.objectContaining({ protocol: "-1", cidrBlocks: ["0.0.0.0/0"] }),
    ]);
    // No separate rule resources that could open a port beside the group's own lists.
    expect(
      recorded.filter((r) => /securityGroupIngressRule|securityGroupRule/.test(r.type)),
    ).toEqual([]);
  });

  it("uses a configured VPC and subnets instead, and refuses half of that pair", () => {
    pulumi.runtime.setAllConfig({
      "shardfleet:workerAmiId": AMI,
      "shardfleet:adminCidr": ADMIN_CIDR,
      "shardfleet:vpcId": "vpc-0123456789abcdef0",
      "shardfleet:subnetIds": JSON.stringify([
        "subnet-0123456789abcdef0",
        "subnet-0123456789abcdef1",
      ]),
    });
    expect(readDeploymentSettings().existingNetwork).toEqual({
      vpcId: "vpc-0123456789abcdef0",
      subnetIds: ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
    });
    pulumi.runtime.setAllConfig({
      "shardfleet:workerAmiId": AMI,
      "shardfleet:adminCidr": ADMIN_CIDR,
      "shardfleet:vpcId": "vpc-0123456789abcdef0",
    });
    expect(() => readDeploymentSettings()).toThrow("shardfleet:subnetIds");
  });
});

describe("worker launch template", () => {
  const template = () => only("aws:ec2/launchTemplate:LaunchTemplate").inputs;

  it("requires IMDSv2 with a hop limit of 1 and terminates on shutdown", () => {
    expect(template().metadataOptions).toEqual({
      httpEndpoint: "enabled",
      httpTokens: "required",
      httpPutResponseHopLimit: 1,
    });
    expect(template().instanceInitiatedShutdownBehavior).toBe("terminate");
    expect(template().updateDefaultVersion).toBe(true);
  });

  it("runs the configured image as the worker profile in the no-inbound group", () => {
    expect(template().imageId).toBe(AMI);
    expect(template().iamInstanceProfile).toEqual({ name: out.workerInstanceProfileName });
    expect(template().vpcSecurityGroupIds).toEqual(["sg-sf-test-worker-sg"]);
    expect(template().tagSpecifications.map((t: Inputs) => t.resourceType)).toEqual([
      "instance",
      "volume",
    ]);
  });

  it("writes only the non-secret settings to the worker's env file at boot", () => {
    const script = Buffer.from(template().userData, "base64").toString("utf8");
    expect(script).toMatch(/^#!\/bin\/bash\n/);
    const env = /<<'SHARDFLEET_ENV'\n([\s\S]*?)\nSHARDFLEET_ENV/.exec(script)?.[1]?.split("\n");
    expect(env).toEqual([
      "AWS_REGION=us-east-1",
      `NODE_ENV=production`,
      `SHARDFLEET_BUCKET=${out.bucketName}`,
      `SHARDFLEET_DLQ_URL=${out.dlqUrl}`,
      `SHARDFLEET_STRAGGLER_QUEUE_URL=${out.stragglerQueueUrl}`,
      `SHARDFLEET_VISIBILITY_TIMEOUT_S=${VISIBILITY_TIMEOUT}`,
      `SHARDFLEET_WORK_QUEUE_URL=${out.workQueueUrl}`,
    ]);
    // The path the image's unit reads (ami/ansible/roles/shardfleet_worker/defaults).
    expect(script).toContain("mv /etc/shardfleet/worker.env.new /etc/shardfleet/worker.env");
    expect(script).toContain("chmod 0640");
    expect(script).not.toMatch(/SECRET|ACCESS_KEY|TOKEN|PASSWORD/i);
  });
});

describe("scheduler identity", () => {
  const statements = (): Statement[] =>
    JSON.parse(only("aws:iam/rolePolicy:RolePolicy", "scheduler-policy").inputs.policy).Statement;
  const bySid = (sid: string) => {
    const found = statements().find((s) => s.Sid === sid);
    expect(found, sid).toBeDefined();
    return found!;
  };
  const ec2 = (resource: string) => `arn:aws:ec2:${REGION}:${ACCOUNT}:${resource}`;

  it("launches fleets and instances only when the request carries this fleet's tag", () => {
    const tagged = bySid("LaunchTaggedFleetsAndInstances");
    expect(list(tagged.Action).sort()).toEqual(["ec2:CreateFleet", "ec2:RunInstances"]);
    expect(tagged.Resource).toEqual([ec2("fleet/*"), ec2("instance/*")]);
    expect(tagged.Condition).toEqual({
      StringEquals: { [`aws:RequestTag/${FLEET_TAGS.fleet}`]: out.bucketName },
    });
  });

  it("launches only from the worker template, image, subnets and security group", () => {
    const from = bySid("LaunchFromWorkerTemplate");
    expect(from.Condition).toBeUndefined();
    expect(list(from.Resource).sort()).toEqual(
      [
        ec2("launch-template/lt-0123456789abcdef0"),
        ec2("security-group/sg-sf-test-worker-sg"),
        `arn:aws:ec2:${REGION}::image/${AMI}`,
        ec2("volume/*"),
        ec2("network-interface/*"),
        ...out.subnetIds.map((id) => ec2(`subnet/${id}`)),
      ].sort(),
    );
  });

  it("tags only at launch and terminates only instances of its own fleet", () => {
    expect(bySid("TagOnlyAtLaunch").Condition).toEqual({
      StringEquals: { "ec2:CreateAction": ["CreateFleet", "RunInstances"] },
    });
    const terminate = bySid("TerminateOwnFleet");
    expect(terminate.Action).toBe("ec2:TerminateInstances");
    expect(terminate.Resource).toBe(ec2("instance/*"));
    expect(terminate.Condition).toEqual({
      StringEquals: { [`ec2:ResourceTag/${FLEET_TAGS.fleet}`]: out.bucketName },
    });
  });

  it("passes only the worker role, and only to EC2", () => {
    const passes = statements().filter((s) => list(s.Action).includes("iam:PassRole"));
    expect(passes).toEqual([
      {
        Sid: "PassWorkerRoleToEc2",
        Effect: "Allow",
        Action: "iam:PassRole",
        Resource: out.workerRoleArn,
        Condition: { StringEquals: { "iam:PassedToService": "ec2.amazonaws.com" } },
      },
    ]);
  });

  it("uses the bucket's operations/ objects and the three queues", () => {
    expect(bySid("OperationObjects").Resource).toBe(`arn:aws:s3:::${out.bucketName}/operations/*`);
    expect(bySid("ListOperations").Resource).toBe(`arn:aws:s3:::${out.bucketName}`);
    expect(list(bySid("ShardQueues").Resource)).toHaveLength(3);
  });

  it("is the scheduler instance's profile", () => {
    const profile = only("aws:iam/instanceProfile:InstanceProfile", "scheduler-profile");
    expect(profile.inputs.role).toBe(
      `${only("aws:iam/role:Role", "scheduler-role").name}-physical`,
    );
    expect(only("aws:ec2/instance:Instance").inputs.iamInstanceProfile).toBe(
      `${profile.name}-physical`,
    );
  });
});

describe("every policy", () => {
  it("allows no wildcard action, and '*' resources only for the documented describe calls", () => {
    const policies = recorded.filter((r) => r.type === "aws:iam/rolePolicy:RolePolicy");
    expect(policies).toHaveLength(2);
    const unscoped: string[] = [];
    for (const policy of policies) {
      for (const s of JSON.parse(policy.inputs.policy).Statement as Statement[]) {
        expect(s.Effect).toBe("Allow");
        for (const action of list(s.Action)) expect(action, policy.name).not.toContain("*");
        if (list(s.Resource).includes("*")) {
          expect(s.Resource, `${policy.name} ${s.Sid}`).toBe("*");
          unscoped.push(...list(s.Action));
        }
      }
    }
    expect(unscoped.sort()).toEqual([
      "ec2:DescribeInstanceTypes",
      "ec2:DescribeInstances",
      "ec2:DescribeSpotPriceHistory",
    ]);
  });
});

describe("scheduler instance", () => {
  it("is an IMDSv2-only instance of the image in the first subnet", () => {
    const instance = only("aws:ec2/instance:Instance").inputs;
    expect(instance.ami).toBe(AMI);
    expect(instance.instanceType).toBe("t3.small");
    expect(instance.subnetId).toBe(out.subnetIds[0]);
    expect(instance.metadataOptions).toEqual({
      httpEndpoint: "enabled",
      httpTokens: "required",
      httpPutResponseHopLimit: 1,
    });
    expect(instance.rootBlockDevice.encrypted).toBe(true);
    expect(instance.vpcSecurityGroupIds).toEqual(["sg-sf-test-scheduler-sg"]);
  });

  it("admits only the API port, only from the admin CIDR", () => {
    const sg = only("aws:ec2/securityGroup:SecurityGroup", "scheduler-sg").inputs;
    expect(sg.ingress).toEqual([
      expect.objectContaining({
        protocol: "tcp",
        fromPort: 8080,
        toPort: 8080,
        cidrBlocks: [ADMIN_CIDR],
      }),
    ]);
  });

  it("runs the scheduler with EC2 capacity from the worker template, not a worker", () => {
    const script: string = only("aws:ec2/instance:Instance").inputs.userData;
    expect(script).toContain("cat > /etc/shardfleet/scheduler.env.new <<'SHARDFLEET_ENV'");
    for (const line of [
      "SHARDFLEET_CAPACITY=ec2",
      "SHARDFLEET_EC2_LAUNCH_TEMPLATE=lt-0123456789abcdef0",
      `SHARDFLEET_EC2_SUBNETS=${out.subnetIds.join(",")}`,
      "SHARDFLEET_EC2_INSTANCE_TYPES=c7a.large,m7a.large",
      `SHARDFLEET_BUCKET=${out.bucketName}`,
      "SHARDFLEET_API_HOST=0.0.0.0",
      "SHARDFLEET_API_PORT=8080",
    ]) {
      expect(script.split("\n")).toContain(line);
    }
    expect(script).toContain("systemctl disable --now shardfleet-worker.service");
    expect(script).toContain("systemctl restart shardfleet-scheduler.service");
  });
});

/** The NAME=value lines a boot script writes, as an environment. */
function bootEnv(script: string): Record<string, string> {
  const body = /<<'SHARDFLEET_ENV'\n([\s\S]*?)\nSHARDFLEET_ENV/.exec(script)?.[1] ?? "";
  return Object.fromEntries(
    body
      .split("\n")
      .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
  );
}

describe("boot settings", () => {
  it("are accepted by the services' own settings parser (no unknown SHARDFLEET_* name)", () => {
    const worker = loadConfig(
      bootEnv(
        Buffer.from(
          only("aws:ec2/launchTemplate:LaunchTemplate").inputs.userData,
          "base64",
        ).toString("utf8"),
      ),
    );
    expect(worker.bucket).toBe(out.bucketName);
    expect(worker.queues).toEqual({
      work: out.workQueueUrl,
      straggler: out.stragglerQueueUrl,
      dlq: out.dlqUrl,
    });
    expect(worker.worker.visibilityTimeoutSeconds).toBe(VISIBILITY_TIMEOUT);

    const scheduler = loadConfig(bootEnv(only("aws:ec2/instance:Instance").inputs.userData));
    expect(scheduler.api).toMatchObject({ host: "0.0.0.0", port: 8080 });
    expect(scheduler.fleet.capacity).toBe("ec2");
    expect(scheduler.fleet.ec2.launchTemplate).toBe(out.launchTemplateId);
    expect(scheduler.fleet.ec2.instanceTypes).toEqual(["c7a.large", "m7a.large"]);
    expect(scheduler.fleet.ec2.subnets.map((s) => s.subnetId)).toEqual(out.subnetIds);
  });
});

describe("every resource", () => {
  it("carries the project and stack tags where AWS can tag it", () => {
    const custom = recorded.filter((r) => r.custom);
    expect(custom.length).toBeGreaterThan(0);
    for (const r of custom) {
      if (UNTAGGABLE.has(r.type)) continue;
      // Instances also get a Name, which the EC2 console shows.
      const name =
        r.inputs.tags?.Name === undefined ? {} : { Name: expect.stringMatching(/^sf-test-/) };
      expect(r.inputs.tags, `${r.type} ${r.name}`).toEqual({
        project: "shardfleet",
        stack: "test",
        ...name,
      });
    }
    // The tagged set is what we think it is, so a new untaggable type is a conscious choice.
    expect(
      custom
        .filter((r) => !UNTAGGABLE.has(r.type))
        .map((r) => r.type)
        .sort(),
    ).toEqual([
      "aws:ec2/instance:Instance",
      "aws:ec2/internetGateway:InternetGateway",
      "aws:ec2/launchTemplate:LaunchTemplate",
      "aws:ec2/routeTable:RouteTable",
      "aws:ec2/securityGroup:SecurityGroup",
      "aws:ec2/securityGroup:SecurityGroup",
      "aws:ec2/subnet:Subnet",
      "aws:ec2/subnet:Subnet",
      "aws:ec2/vpc:Vpc",
      "aws:iam/instanceProfile:InstanceProfile",
      "aws:iam/instanceProfile:InstanceProfile",
      "aws:iam/role:Role",
      "aws:iam/role:Role",
      "aws:s3/bucket:Bucket",
      "aws:sqs/queue:Queue",
      "aws:sqs/queue:Queue",
      "aws:sqs/queue:Queue",
    ]);
  });

  it("is the child of a shardfleet component", () => {
    const custom = recorded.filter((r) => r.custom);
    expect(urns).toHaveLength(recorded.length);
    for (const r of custom) {
      const urn = urns.find((u) => u.endsWith(`$${r.type}::${r.name}`));
      expect(urn, `${r.type} ${r.name} has no shardfleet parent`).toMatch(
        /::shardfleet:[a-z]+:[A-Za-z]+\$aws:/,
      );
    }
  });
});

/** The `default:` of each `shardfleet:*` key in Pulumi.yaml, read without a YAML library. */
function pulumiYamlDefaults(): Record<string, unknown> {
  const text = readFileSync(new URL("../Pulumi.yaml", import.meta.url), "utf8");
  const defaults: Record<string, unknown> = {};
  for (const block of text.split(/^ {2}shardfleet:/m).slice(1)) {
    const key = block.slice(0, block.indexOf(":"));
    const body = block.split(/^ {2}\S/m)[0]!;
    const scalar = /^ {4}default: (.+)$/m.exec(body);
    const items = /^ {4}default:\n((?: {6}- .+\n)+)/m.exec(body);
    if (scalar) defaults[key] = /^\d+$/.test(scalar[1]!) ? Number(scalar[1]) : scalar[1];
    else if (items) defaults[key] = [...items[1]!.matchAll(/- (.+)/g)].map((m) => m[1]);
  }
  return defaults;
}

/** The `shardfleet:*` keys Pulumi.yaml describes (each with a description). */
function pulumiYamlKeys(): string[] {
  const text = readFileSync(new URL("../Pulumi.yaml", import.meta.url), "utf8");
  const keys: string[] = [];
  for (const block of text.split(/^ {2}shardfleet:/m).slice(1)) {
    const body = block.split(/^ {2}\S/m)[0]!;
    expect(body, block.slice(0, 40)).toMatch(/^ {4}description: /m);
    keys.push(block.slice(0, block.indexOf(":")));
  }
  return keys;
}

describe("settings", () => {
  it("are all described in Pulumi.yaml, and Pulumi.yaml describes no other", () => {
    expect(pulumiYamlKeys().sort()).toEqual([...CONFIG_KEYS].sort());
  });

  it("default to the values Pulumi.yaml declares", () => {
    pulumi.runtime.setAllConfig({});
    expect(readSettings()).toEqual(DEFAULT_SETTINGS);
    expect(pulumiYamlDefaults()).toEqual(DEFAULT_SETTINGS);
  });

  it.each([
    ["shardfleet:maxReceiveCount", "0"],
    ["shardfleet:maxReceiveCount", "2.5"],
    ["shardfleet:visibilityTimeoutSeconds", "43201"],
    ["shardfleet:tempObjectExpirationDays", "0"],
    ["shardfleet:namePrefix", "Shard_Fleet"],
    ["shardfleet:instanceTypes", "[]"],
  ])("reject %s = %s, naming the key", (key, value) => {
    pulumi.runtime.setAllConfig({ [key]: value });
    expect(() => readSettings()).toThrow(key);
  });

  it.each([
    ["shardfleet:workerAmiId", "ubuntu"],
    ["shardfleet:adminCidr", "10.0.0.0"],
    ["shardfleet:adminCidr", "10.0.0.300/32"],
    ["shardfleet:subnetIds", '["subnet-0123456789abcdef0"]'],
  ])("reject %s = %s, naming the key", (key, value) => {
    pulumi.runtime.setAllConfig({
      "shardfleet:workerAmiId": AMI,
      "shardfleet:adminCidr": ADMIN_CIDR,
      "shardfleet:vpcId": "vpc-0123456789abcdef0",
      "shardfleet:subnetIds": JSON.stringify([
        "subnet-0123456789abcdef0",
        "subnet-0123456789abcdef1",
      ]),
      [key]: value,
    });
    expect(() => readDeploymentSettings()).toThrow(key);
  });

  it.each(["shardfleet:workerAmiId", "shardfleet:adminCidr"])("require %s", (key) => {
    const config: Record<string, string> = {
      "shardfleet:workerAmiId": AMI,
      "shardfleet:adminCidr": ADMIN_CIDR,
    };
    delete config[key];
    pulumi.runtime.setAllConfig(config);
    expect(() => readDeploymentSettings()).toThrow(key);
  });
});
