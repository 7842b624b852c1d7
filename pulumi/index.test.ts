/**
 * Unit tests of the stack with Pulumi's mocks: no CLI, no cloud. The mocks record what the
 * program asks for; the tests read those inputs (and the stack outputs) as AWS would get them.
 * Config is set to non-default values before the program is imported, so each check also shows
 * that the setting flows through.
 */
import { readFileSync } from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { FLEET_TAGS } from "../src/shared/capacity.ts";
import { loadConfig } from "../src/shared/config.ts";
import { keys, matchesIamPattern, shardIdFor } from "../src/shared/keys.ts";
import {
  apiTokenLines,
  CONFIG_KEYS,
  DEFAULT_SETTINGS,
  REQUIRED_CONFIG_KEYS,
  readApiToken,
  readDeploymentSettings,
  readSettings,
  SECRET_CONFIG_KEYS,
  VISIBILITY_TIMEOUT_RANGE,
} from "./config.ts";
import {
  ACCOUNT,
  ALB_ZONE_ID,
  type Inputs,
  REGION,
  type Recorded,
  recordingMocks,
  resolve,
} from "./testing.ts";

type Program = typeof import("./index.ts");

const MAX_RECEIVE_COUNT = 5;
const EXPIRATION_DAYS = 3;
const VISIBILITY_TIMEOUT = 90;
const LOG_RETENTION_DAYS = 14;
const AMI = "ami-0123456789abcdef0";
const ADMIN_CIDR = "203.0.113.7/32";
const CERTIFICATE_ARN = `arn:aws:acm:${REGION}:${ACCOUNT}:certificate/0a1b2c3d-4e5f-6789-abcd-ef0123456789`;
const DOMAIN = "shardfleet.example.com";
const HOSTED_ZONE = "Z0123456789ABCDEFGHIJ";
/** As `openssl rand -hex 32` makes one: the value that must reach SSM and nothing else. */
const API_TOKEN = "5ec7e7a9c0ffee00d15ea5edba5eba11deadbeefcafef00dfeedfacebadc0de1";
/** The settings readDeploymentSettings cannot do without. */
const REQUIRED = {
  "shardfleet:workerAmiId": AMI,
  "shardfleet:adminCidr": ADMIN_CIDR,
  "shardfleet:apiCertificateArn": CERTIFICATE_ARN,
};
const VPC = "vpc-0123456789abcdef0";
const SUBNETS = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"];
/** An existing VPC and two of its subnets, as a stack sets them. */
const EXISTING_NETWORK = {
  "shardfleet:vpcId": VPC,
  "shardfleet:subnetIds": JSON.stringify(SUBNETS),
};

/** Resources that AWS cannot tag; every other resource must carry the stack's tags. */
const UNTAGGABLE = new Set([
  "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
  "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
  "aws:s3/bucketVersioning:BucketVersioning",
  "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
  "aws:s3/bucketPolicy:BucketPolicy",
  "aws:iam/rolePolicy:RolePolicy",
  "aws:ec2/routeTableAssociation:RouteTableAssociation",
  "aws:sqs/queuePolicy:QueuePolicy",
  "aws:cloudwatch/eventTarget:EventTarget",
  "aws:lb/targetGroupAttachment:TargetGroupAttachment",
  "aws:route53/record:Record",
  "aws:sns/topicSubscription:TopicSubscription",
  "aws:cloudwatch/logMetricFilter:LogMetricFilter",
]);

const recorded: Recorded[] = [];

/** The scheduler's launch template (its Auto Scaling group launches from it). */
const schedulerTemplate = () =>
  only("aws:ec2/launchTemplate:LaunchTemplate", "scheduler-launch-template").inputs;
/** The scheduler's boot script, decoded from its launch template. */
const schedulerUserData = (): string =>
  Buffer.from(schedulerTemplate().userData, "base64").toString("utf8");

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

/** The log group's ARN as @pulumi/aws v7 reports it (testing.ts), without `:*`. */
const logGroupArn = () => `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:${out.logGroupName}`;

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
  apiLoadBalancerDnsName: string;
  spotEventsQueueUrl: string;
  logGroupName: string;
  launchTemplateId: string;
  subnetIds: string[];
  vpcId: string;
  apiTokenParameterName: string | undefined;
};
/** Every registered resource's URN, which encodes its parent chain. */
let urns: string[];

beforeAll(async () => {
  await pulumi.runtime.setMocks(recordingMocks(recorded), "shardfleet", "test", false);
  pulumi.runtime.setAllConfig(
    {
      ...REQUIRED,
      "shardfleet:apiDomainName": DOMAIN,
      "shardfleet:apiHostedZoneId": HOSTED_ZONE,
      "shardfleet:namePrefix": "sf-test",
      "shardfleet:maxReceiveCount": String(MAX_RECEIVE_COUNT),
      "shardfleet:tempObjectExpirationDays": String(EXPIRATION_DAYS),
      "shardfleet:visibilityTimeoutSeconds": String(VISIBILITY_TIMEOUT),
      "shardfleet:logRetentionDays": String(LOG_RETENTION_DAYS),
      "shardfleet:instanceTypes": JSON.stringify(["c7a.large", "m7a.large"]),
      "shardfleet:apiToken": API_TOKEN,
    },
    ["shardfleet:apiToken"],
  );
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
    apiLoadBalancerDnsName: await resolve(program.apiLoadBalancerDnsName),
    spotEventsQueueUrl: await resolve(program.spotEventsQueueUrl),
    logGroupName: await resolve(program.logGroupName),
    launchTemplateId: await resolve(program.launchTemplateId),
    subnetIds: await resolve(program.subnetIds),
    vpcId: await resolve(program.vpcId),
    apiTokenParameterName: program.apiTokenParameterName
      ? await resolve(program.apiTokenParameterName)
      : undefined,
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
    expect(out.apiEndpoint).toBe(`https://${DOMAIN}`);
    expect(out.apiLoadBalancerDnsName).toMatch(/^sf-test-scheduler-alb.*\.elb\.amazonaws\.com$/);
    expect(out.spotEventsQueueUrl).toMatch(/^https:\/\/sqs\..+\/sf-test-spot-events/);
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

  it("expires scratch/ after the configured days, keeps operations/, aborts stale uploads", () => {
    const lifecycle = only("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration");
    expect(lifecycle.inputs.bucket).toBe(out.bucketName);
    const rules: Inputs[] = lifecycle.inputs.rules;
    expect(rules.every((r) => r.status === "Enabled")).toBe(true);

    const expiring = rules.filter((r) => r.expiration !== undefined);
    expect(expiring).toHaveLength(1);
    expect(expiring[0]?.filter).toEqual({ prefix: "scratch/" });
    expect(expiring[0]?.expiration).toEqual({ days: EXPIRATION_DAYS });
    // Outputs and cost reports stay: no expiring rule covers operations/ (nor the whole bucket).
    for (const rule of expiring) {
      expect("operations/".startsWith(rule.filter?.prefix ?? "")).toBe(false);
    }

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
          // Reads what it runs from: manifests, markers, attempts, slices, checkpoints, chunks.
          effect: "Allow",
          actions: ["s3:GetObject"],
          resources: [`${bucketArn()}/operations/*`, `${bucketArn()}/scratch/*`],
          condition: undefined,
        },
        {
          // Writes scratch objects, attempt records and commit markers only (issue 13): never
          // a manifest, fleet record, output or cost report.
          effect: "Allow",
          actions: ["s3:AbortMultipartUpload", "s3:PutObject"],
          resources: [`${bucketArn()}/scratch/*`],
          condition: undefined,
        },
        {
          effect: "Allow",
          actions: ["s3:PutObject"],
          resources: [
            `${bucketArn()}/operations/*/shards/*/attempts/*`,
            `${bucketArn()}/operations/*/shards/*/done.json`,
          ],
          condition: undefined,
        },
        {
          effect: "Allow",
          actions: ["logs:CreateLogStream", "logs:PutLogEvents"],
          resources: [logGroupArn(), `${logGroupArn()}:*`],
          condition: undefined,
        },
      ].map((g) => expect.objectContaining(g)),
    );
    expect(grants).toHaveLength(6);

    for (const grant of grants) {
      for (const action of grant.actions) expect(action).not.toMatch(/\*/);
      for (const resource of grant.resources) expect(resource).not.toBe("*");
    }
  });

  it("cannot write a manifest, fleet record, output or cost report, nor delete anything", () => {
    const statements: Statement[] = JSON.parse(
      only("aws:iam/rolePolicy:RolePolicy", "worker-policy").inputs.policy,
    ).Statement;
    const writable = statements
      .filter((s) => list(s.Action).some((a) => a === "s3:PutObject"))
      .flatMap((s) => list(s.Resource))
      .map((arn) => arn.slice(`${bucketArn()}/`.length));
    const op = "op-00abc-123";
    const shard = shardIdFor(7);
    const canWrite = (key: string) => writable.some((p) => matchesIamPattern(p, key));
    for (const key of [keys.manifest(op), keys.fleet(op), keys.result(op), keys.cost(op)]) {
      expect(canWrite(key), key).toBe(false);
    }
    for (const key of [
      keys.done(op, shard),
      keys.attempt(op, shard, "a-1"),
      keys.checkpoint(op, shard),
      keys.chunk(op, shard, 0, 500),
    ]) {
      expect(canWrite(key), key).toBe(true);
    }
    const actions = statements.flatMap((s) => list(s.Action));
    expect(actions.filter((a) => /^s3:Delete/.test(a))).toEqual([]);
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
    pulumi.runtime.setAllConfig({ ...REQUIRED, ...EXISTING_NETWORK });
    expect(readDeploymentSettings().existingNetwork).toEqual({ vpcId: VPC, subnetIds: SUBNETS });
    pulumi.runtime.setAllConfig({ ...REQUIRED, "shardfleet:vpcId": VPC });
    expect(() => readDeploymentSettings()).toThrow("shardfleet:subnetIds");
  });
});

describe("worker launch template", () => {
  const template = () => only("aws:ec2/launchTemplate:LaunchTemplate", "-worker").inputs;

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

  it("encrypts the root volume, gp3, deleted with the worker", () => {
    expect(template().blockDeviceMappings).toEqual([
      {
        deviceName: DEFAULT_SETTINGS.workerRootDeviceName,
        ebs: { encrypted: "true", volumeType: "gp3", deleteOnTermination: "true" },
      },
    ]);
    expect(template().blockDeviceMappings[0].ebs.kmsKeyId).toBeUndefined();
    expect(template().blockDeviceMappings[0].ebs.snapshotId).toBeUndefined();
  });

  it("writes only the non-secret settings to the worker's env file at boot", () => {
    const script = Buffer.from(template().userData, "base64").toString("utf8");
    expect(script).toMatch(/^#!\/bin\/bash\n/);
    const env = /<<'SHARDFLEET_ENV'\n([\s\S]*?)\nSHARDFLEET_ENV/.exec(script)?.[1]?.split("\n");
    expect(env).toEqual([
      "AWS_REGION=us-east-1",
      `CLOUDWATCH_LOG_GROUP=${out.logGroupName}`,
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
        // The image's root snapshot, which every launch reads.
        `arn:aws:ec2:${REGION}::snapshot/*`,
        ec2("volume/*"),
        ec2("network-interface/*"),
        // What an instant fleet opens for spot capacity.
        ec2("spot-instances-request/*"),
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

  it("uses the bucket's operations/ and scratch/ objects and the three queues", () => {
    expect(bySid("OperationObjects").Resource).toEqual([
      `arn:aws:s3:::${out.bucketName}/operations/*`,
      `arn:aws:s3:::${out.bucketName}/scratch/*`,
    ]);
    expect(bySid("ListBucket").Resource).toBe(`arn:aws:s3:::${out.bucketName}`);
    expect(list(bySid("ShardQueues").Resource)).toHaveLength(3);
  });

  it("reads and writes the scheduler lease record, and no other object outside operations", () => {
    expect(bySid("SchedulerLease")).toEqual({
      Sid: "SchedulerLease",
      Effect: "Allow",
      Action: ["s3:GetObject", "s3:PutObject"],
      Resource: `arn:aws:s3:::${out.bucketName}/scheduler/lease.json`,
    });
  });

  it("consumes the spot-events queue, and may not send to it", () => {
    const queueArn = `arn:aws:sqs:${REGION}:${ACCOUNT}:${only("aws:sqs/queue:Queue", "-spot-events").name}-physical`;
    expect(bySid("ConsumeSpotEvents")).toEqual({
      Sid: "ConsumeSpotEvents",
      Effect: "Allow",
      Action: [
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
      ],
      Resource: queueArn,
    });
    const onQueue = statements().filter((s) => list(s.Resource).includes(queueArn));
    expect(onQueue).toHaveLength(1);
    // The shard-queue statements name the three shard queues only.
    expect(list(bySid("ShardQueues").Resource)).not.toContain(queueArn);
  });

  it("is the scheduler instance's profile", () => {
    const profile = only("aws:iam/instanceProfile:InstanceProfile", "scheduler-profile");
    expect(profile.inputs.role).toBe(
      `${only("aws:iam/role:Role", "scheduler-role").name}-physical`,
    );
    expect(schedulerTemplate().iamInstanceProfile).toEqual({ name: `${profile.name}-physical` });
  });
});

describe("log shipping", () => {
  const shipLogs = (policy: string): Statement[] =>
    (
      JSON.parse(only("aws:iam/rolePolicy:RolePolicy", policy).inputs.policy)
        .Statement as Statement[]
    ).filter((s) => list(s.Action).some((a) => a.startsWith("logs:")));

  it("has a log group with the configured retention and the stack's name prefix", () => {
    const group = only("aws:cloudwatch/logGroup:LogGroup");
    expect(group.inputs.retentionInDays).toBe(LOG_RETENTION_DAYS);
    expect(out.logGroupName).toBe(`${group.name}-physical`);
    expect(out.logGroupName).toMatch(/^sf-test-logs/);
  });

  it.each(["worker-policy", "scheduler-policy"])(
    "lets the %s role create and write streams in that group only",
    (policy) => {
      expect(shipLogs(policy)).toEqual([
        {
          Sid: "ShipLogs",
          Effect: "Allow",
          Action: ["logs:CreateLogStream", "logs:PutLogEvents"],
          Resource: [logGroupArn(), `${logGroupArn()}:*`],
        },
      ]);
    },
  );

  it("names the group in both settings files as CLOUDWATCH_LOG_GROUP, with the region", () => {
    const worker = bootEnv(
      Buffer.from(
        only("aws:ec2/launchTemplate:LaunchTemplate", "-worker").inputs.userData,
        "base64",
      ).toString("utf8"),
    );
    const scheduler = bootEnv(schedulerUserData());
    for (const env of [worker, scheduler]) {
      expect(env.CLOUDWATCH_LOG_GROUP).toBe(out.logGroupName);
      expect(env.AWS_REGION).toBe(REGION);
    }
  });
});

describe("API token", () => {
  const parameter = () => only("aws:ssm/parameter:Parameter");
  const parameterArn = () =>
    `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/${out.apiTokenParameterName}`;
  const schedulerStatements = (): Statement[] =>
    JSON.parse(only("aws:iam/rolePolicy:RolePolicy", "scheduler-policy").inputs.policy).Statement;

  it("is an SSM SecureString under the AWS-managed aws/ssm key, its name a stack output", () => {
    expect(parameter().inputs.type).toBe("SecureString");
    // What the provider gets: the token, marked secret (so state and previews mask it).
    expect(parameter().inputs.value).toEqual({
      [pulumi.runtime.specialSigKey]: pulumi.runtime.specialSecretSig,
      value: API_TOKEN,
    });
    expect(parameter().inputs.keyId).toBeUndefined();
    expect(out.apiTokenParameterName).toBe(`${parameter().name}-physical`);
    expect(out.apiTokenParameterName).toMatch(/^sf-test-api-token/);
  });

  it("may be read by the scheduler role alone, and only that parameter", () => {
    const reads = schedulerStatements().filter((s) =>
      list(s.Action).some((a) => a.startsWith("ssm:") || a.startsWith("kms:")),
    );
    // No kms:Decrypt: the aws/ssm key's policy lets the account's principals decrypt via SSM.
    expect(reads).toEqual([
      {
        Sid: "ReadApiToken",
        Effect: "Allow",
        Action: "ssm:GetParameter",
        Resource: parameterArn(),
      },
    ]);
    const worker = JSON.parse(only("aws:iam/rolePolicy:RolePolicy", "worker-policy").inputs.policy)
      .Statement as Statement[];
    expect(worker.flatMap((s) => list(s.Action)).filter((a) => /^(ssm|kms):/.test(a))).toEqual([]);
  });

  it("reaches the scheduler by name only: no user data holds the token", () => {
    const script: string = schedulerUserData();
    expect(bootEnv(script).SHARDFLEET_API_TOKEN_SSM_PARAMETER).toBe(out.apiTokenParameterName);
    // With a token the API is never opened to anonymous callers.
    expect(bootEnv(script).SHARDFLEET_API_ALLOW_ANONYMOUS).toBeUndefined();
    const worker = Buffer.from(
      only("aws:ec2/launchTemplate:LaunchTemplate", "-worker").inputs.userData,
      "base64",
    ).toString("utf8");
    for (const userData of [script, worker]) {
      expect(userData).not.toContain(API_TOKEN);
      expect(userData).not.toContain(API_TOKEN.slice(0, 16));
    }
    expect(bootEnv(worker).SHARDFLEET_API_TOKEN_SSM_PARAMETER).toBeUndefined();
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
    // What src/ sends: DescribeInstancesCommand (ec2-capacity.ts) and
    // DescribeSpotPriceHistoryCommand (price-source.ts), nothing else.
    expect(unscoped.sort()).toEqual(["ec2:DescribeInstances", "ec2:DescribeSpotPriceHistory"]);
  });
});

describe("scheduler instance", () => {
  it("is an IMDSv2-only instance of the image, in an Auto Scaling group of one over the subnets", () => {
    const instance = schedulerTemplate();
    expect(instance.imageId).toBe(AMI);
    expect(instance.instanceType).toBe("t3.small");
    expect(instance.metadataOptions).toEqual({
      httpEndpoint: "enabled",
      httpTokens: "required",
      httpPutResponseHopLimit: 1,
    });
    expect(instance.blockDeviceMappings).toEqual([
      {
        deviceName: DEFAULT_SETTINGS.workerRootDeviceName,
        ebs: { encrypted: "true", volumeType: "gp3", deleteOnTermination: "true" },
      },
    ]);
    expect(instance.networkInterfaces).toEqual([
      expect.objectContaining({
        associatePublicIpAddress: "true",
        securityGroups: ["sg-sf-test-scheduler-sg"],
      }),
    ]);
    // One instance, replaced without a human when EC2 or the load balancer finds it unhealthy;
    // any subnet of the stack, so one AZ's trouble does not keep it down.
    const group = only("aws:autoscaling/group:Group", "scheduler-group").inputs;
    expect(group).toMatchObject({
      minSize: 1,
      maxSize: 1,
      desiredCapacity: 1,
      vpcZoneIdentifiers: out.subnetIds,
      healthCheckType: "ELB",
      healthCheckGracePeriod: 300,
      launchTemplate: { id: "lt-0123456789abcdef0" },
    });
  });

  it("admits only the API port, only from the load balancer's security group", () => {
    const sg = only("aws:ec2/securityGroup:SecurityGroup", "scheduler-sg").inputs;
    expect(sg.ingress).toEqual([
      expect.objectContaining({
        protocol: "tcp",
        fromPort: 8080,
        toPort: 8080,
        securityGroups: ["sg-sf-test-scheduler-alb-sg"],
      }),
    ]);
    for (const rule of sg.ingress as Inputs[]) {
      expect(rule.cidrBlocks ?? []).toEqual([]);
      expect(rule.ipv6CidrBlocks ?? []).toEqual([]);
    }
  });

  it("runs the scheduler with EC2 capacity from the worker template, not a worker", () => {
    const script: string = schedulerUserData();
    expect(script).toContain("cat > /etc/shardfleet/scheduler.env.new <<'SHARDFLEET_ENV'");
    for (const line of [
      "SHARDFLEET_CAPACITY=ec2",
      "SHARDFLEET_EC2_LAUNCH_TEMPLATE=lt-0123456789abcdef0",
      `SHARDFLEET_EC2_SUBNETS=${out.subnetIds.join(",")}`,
      "SHARDFLEET_EC2_INSTANCE_TYPES=c7a.large,m7a.large",
      `SHARDFLEET_BUCKET=${out.bucketName}`,
      "SHARDFLEET_API_HOST=0.0.0.0",
      "SHARDFLEET_API_PORT=8080",
      "SHARDFLEET_API_TRUSTED_PROXIES=1",
      `SHARDFLEET_SPOT_EVENTS_QUEUE_URL=${out.spotEventsQueueUrl}`,
    ]) {
      expect(script.split("\n")).toContain(line);
    }
    expect(script).toContain("systemctl disable --now shardfleet-worker.service");
    expect(script).toContain("systemctl restart shardfleet-scheduler.service");
  });
});

describe("API load balancer", () => {
  const alb = () => only("aws:lb/loadBalancer:LoadBalancer").inputs;
  const listener = (port: number) => {
    const found = recorded.filter(
      (r) => r.type === "aws:lb/listener:Listener" && r.inputs.port === port,
    );
    expect(found, `listener on ${port}`).toHaveLength(1);
    return found[0]!.inputs;
  };
  const targetGroupArn = () =>
    `arn:aws:elasticloadbalancing:${REGION}:${ACCOUNT}:targetgroup/${only("aws:lb/targetGroup:TargetGroup").name}-physical/0123456789abcdef`;

  it("is an internet-facing ALB in every subnet of the stack (two AZs)", () => {
    expect(alb().loadBalancerType).toBe("application");
    expect(alb().internal).toBe(false);
    expect(alb().subnets).toEqual(out.subnetIds);
    expect(alb().subnets.length).toBeGreaterThanOrEqual(2);
    expect(alb().securityGroups).toEqual(["sg-sf-test-scheduler-alb-sg"]);
    expect(alb().dropInvalidHeaderFields).toBe(true);
    // Long enough for the quiet wait after a large upload (see IDLE_TIMEOUT_SECONDS).
    expect(alb().idleTimeout).toBeGreaterThanOrEqual(600);
  });

  it("serves HTTPS on 443 with the configured certificate and a TLS 1.2+ policy", () => {
    expect(listener(443)).toMatchObject({
      protocol: "HTTPS",
      certificateArn: CERTIFICATE_ARN,
      sslPolicy: "ELBSecurityPolicy-TLS13-1-2-2021-06",
      defaultActions: [{ type: "forward", targetGroupArn: targetGroupArn() }],
    });
    expect(listener(443).loadBalancerArn).toMatch(/:loadbalancer\/app\/sf-test-scheduler-alb/);
  });

  it("only redirects plain HTTP on 80 to HTTPS", () => {
    expect(listener(80)).toMatchObject({
      protocol: "HTTP",
      defaultActions: [
        { type: "redirect", redirect: { protocol: "HTTPS", port: "443", statusCode: "HTTP_301" } },
      ],
    });
    expect(recorded.filter((r) => r.type === "aws:lb/listener:Listener")).toHaveLength(2);
  });

  it("forwards to the scheduler instance on 8080 and checks its /healthz", () => {
    const group = only("aws:lb/targetGroup:TargetGroup");
    // At most 24 characters, so Pulumi's 7-character suffix keeps the name within 32.
    expect(group.name.length).toBeLessThanOrEqual(24);
    expect(group.inputs).toMatchObject({
      vpcId: out.vpcId,
      targetType: "instance",
      protocol: "HTTP",
      port: 8080,
      healthCheck: { path: "/healthz", matcher: "200", port: "traffic-port" },
    });
    // The Auto Scaling group registers its instance (on the group's port, 8080).
    expect(only("aws:autoscaling/group:Group", "scheduler-group").inputs.targetGroupArns).toEqual([
      targetGroupArn(),
    ]);
  });

  it("admits 443 and 80 from the admin CIDR only", () => {
    const sg = only("aws:ec2/securityGroup:SecurityGroup", "alb-sg").inputs;
    expect(sg.vpcId).toBe(out.vpcId);
    expect(
      (sg.ingress as Inputs[]).map((r) => ({
        port: r.fromPort,
        to: r.toPort,
        cidrs: r.cidrBlocks,
        others: [r.securityGroups, r.ipv6CidrBlocks, r.prefixListIds, r.self].filter(Boolean),
      })),
    ).toEqual([
      { port: 443, to: 443, cidrs: [ADMIN_CIDR], others: [] },
      { port: 80, to: 80, cidrs: [ADMIN_CIDR], others: [] },
    ]);
    expect(sg.egress).toEqual([
      expect.objectContaining({ protocol: "tcp", fromPort: 8080, toPort: 8080 }),
    ]);
  });

  it("aliases the configured domain to the load balancer in the configured zone", () => {
    const record = only("aws:route53/record:Record").inputs;
    expect(record).toEqual({
      zoneId: HOSTED_ZONE,
      name: DOMAIN,
      type: "A",
      aliases: [
        {
          name: out.apiLoadBalancerDnsName,
          zoneId: ALB_ZONE_ID,
          evaluateTargetHealth: true,
        },
      ],
    });
  });
});

describe("spot events", () => {
  const queue = () => only("aws:sqs/queue:Queue", "-spot-events");
  const queueArn = () => `arn:aws:sqs:${REGION}:${ACCOUNT}:${queue().name}-physical`;
  const ruleArn = () =>
    `arn:aws:events:${REGION}:${ACCOUNT}:rule/${only("aws:cloudwatch/eventRule:EventRule").name}-physical`;

  it("match spot interruption warnings and rebalance recommendations from EC2", () => {
    const rule = only("aws:cloudwatch/eventRule:EventRule").inputs;
    expect(JSON.parse(rule.eventPattern)).toEqual({
      source: ["aws.ec2"],
      "detail-type": [
        "EC2 Spot Instance Interruption Warning",
        "EC2 Instance Rebalance Recommendation",
      ],
    });
    expect(rule.eventBusName).toBeUndefined();
  });

  it("go to the spot-events queue, the rule's only target", () => {
    const target = only("aws:cloudwatch/eventTarget:EventTarget").inputs;
    expect(target.arn).toBe(queueArn());
    expect(target.rule).toBe(`${only("aws:cloudwatch/eventRule:EventRule").name}-physical`);
  });

  it("land in a queue encrypted with SQS-managed keys that keeps them a day", () => {
    const q = queue().inputs;
    expect(q.sqsManagedSseEnabled).toBe(true);
    expect(q.kmsMasterKeyId).toBeUndefined();
    expect(q.messageRetentionSeconds).toBe(24 * 3600);
    expect(q.visibilityTimeoutSeconds).toBeLessThanOrEqual(60);
    expect(q.redrivePolicy).toBeUndefined();
  });

  it("may be sent only by EventBridge, and only for this rule", () => {
    const policy = only("aws:sqs/queuePolicy:QueuePolicy").inputs;
    expect(policy.queueUrl).toBe(out.spotEventsQueueUrl);
    expect(JSON.parse(policy.policy).Statement).toEqual([
      {
        Sid: "EventBridgeRuleOnly",
        Effect: "Allow",
        Principal: { Service: "events.amazonaws.com" },
        Action: "sqs:SendMessage",
        Resource: queueArn(),
        Condition: { ArnEquals: { "aws:SourceArn": ruleArn() } },
      },
    ]);
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
          only("aws:ec2/launchTemplate:LaunchTemplate", "-worker").inputs.userData,
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

    const scheduler = loadConfig(bootEnv(schedulerUserData()));
    expect(scheduler.api).toMatchObject({ host: "0.0.0.0", port: 8080 });
    expect(scheduler.fleet.capacity).toBe("ec2");
    expect(scheduler.fleet.ec2.launchTemplate).toBe(out.launchTemplateId);
    expect(scheduler.fleet.ec2.instanceTypes).toEqual(["c7a.large", "m7a.large"]);
    expect(scheduler.fleet.ec2.subnets.map((s) => s.subnetId)).toEqual(out.subnetIds);
    expect(scheduler.queues.spotEvents).toBe(out.spotEventsQueueUrl);
    expect(scheduler.api.auth).toEqual({ source: "ssm", parameter: out.apiTokenParameterName });
  });
});

describe("every resource", () => {
  it("carries the project and stack tags where AWS can tag it", () => {
    const custom = recorded.filter((r) => r.custom);
    expect(custom.length).toBeGreaterThan(0);
    for (const r of custom) {
      if (UNTAGGABLE.has(r.type)) continue;
      // An Auto Scaling group lists its tags as {key, value, propagateAtLaunch}.
      const tags = Array.isArray(r.inputs.tags)
        ? Object.fromEntries(
            (r.inputs.tags as { key: string; value: string }[]).map((t) => [t.key, t.value]),
          )
        : r.inputs.tags;
      // Instances also get a Name, which the EC2 console shows.
      const name = tags?.Name === undefined ? {} : { Name: expect.stringMatching(/^sf-test-/) };
      expect(tags, `${r.type} ${r.name}`).toEqual({
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
      "aws:autoscaling/group:Group",
      "aws:cloudwatch/eventRule:EventRule",
      "aws:cloudwatch/logGroup:LogGroup",
      "aws:cloudwatch/metricAlarm:MetricAlarm",
      "aws:cloudwatch/metricAlarm:MetricAlarm",
      "aws:ec2/internetGateway:InternetGateway",
      "aws:ec2/launchTemplate:LaunchTemplate",
      "aws:ec2/launchTemplate:LaunchTemplate",
      "aws:ec2/routeTable:RouteTable",
      "aws:ec2/securityGroup:SecurityGroup",
      "aws:ec2/securityGroup:SecurityGroup",
      "aws:ec2/securityGroup:SecurityGroup",
      "aws:ec2/subnet:Subnet",
      "aws:ec2/subnet:Subnet",
      "aws:ec2/vpc:Vpc",
      "aws:iam/instanceProfile:InstanceProfile",
      "aws:iam/instanceProfile:InstanceProfile",
      "aws:iam/role:Role",
      "aws:iam/role:Role",
      "aws:lb/listener:Listener",
      "aws:lb/listener:Listener",
      "aws:lb/loadBalancer:LoadBalancer",
      "aws:lb/targetGroup:TargetGroup",
      "aws:s3/bucket:Bucket",
      "aws:sns/topic:Topic",
      "aws:sqs/queue:Queue",
      "aws:sqs/queue:Queue",
      "aws:sqs/queue:Queue",
      "aws:sqs/queue:Queue",
      "aws:ssm/parameter:Parameter",
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

/** A `shardfleet:*` key Pulumi.yaml declares in its `config:` block. */
interface DeclaredKey {
  readonly type: string;
  readonly secret: boolean;
  readonly description: boolean;
  /** Absent: no `default:` line. */
  readonly default?: unknown;
}

const pulumiYamlText = () => readFileSync(new URL("../Pulumi.yaml", import.meta.url), "utf8");

/** A YAML scalar as this file writes them: "", [], booleans, integers and plain strings. */
function yamlScalar(text: string): unknown {
  if (text === '""') return "";
  if (text === "[]") return [];
  if (text === "true" || text === "false") return text === "true";
  if (/^-?\d+$/.test(text)) return Number(text);
  return text;
}

/**
 * Pulumi.yaml's `shardfleet:*` keys, read without a YAML library: those its `config:` block
 * declares, and those only a comment there describes (`# shardfleet:<key> (<type>, secret)`).
 */
function pulumiYaml(): { declared: Map<string, DeclaredKey>; commented: string[] } {
  const text = pulumiYamlText();
  const config = text.slice(text.search(/^config:$/m));
  const declared = new Map<string, DeclaredKey>();
  for (const block of config.split(/^ {2}shardfleet:/m).slice(1)) {
    const key = block.slice(0, block.indexOf(":"));
    // The block ends at the next line indented two spaces or less (key, comment or top level).
    const body = block.slice(block.indexOf("\n") + 1).split(/^ {0,2}\S/m)[0]!;
    const scalar = /^ {4}default: (.+)$/m.exec(body);
    const items = /^ {4}default:\n((?: {6}- .+\n)+)/m.exec(body);
    declared.set(key, {
      type: /^ {4}type: (\S+)$/m.exec(body)?.[1] ?? "",
      secret: /^ {4}secret: true$/m.test(body),
      description: /^ {4}description: /m.test(body),
      ...(scalar
        ? { default: yamlScalar(scalar[1]!) }
        : items
          ? { default: [...items[1]!.matchAll(/- (.+)/g)].map((m) => yamlScalar(m[1]!)) }
          : {}),
    });
  }
  const commented = [...config.matchAll(/^ {2}# shardfleet:(\w+) \((\w+), secret\)/gm)].map(
    (m) => m[1]!,
  );
  return { declared, commented };
}

/**
 * The config a stack that sets only `set` runs with under the CLI: every declared default the
 * stack does not override (ValidateStackConfigAndApplyProjectConfig), as the language host
 * passes values, strings with arrays and objects as JSON.
 */
function withProjectDefaults(set: Record<string, string>): Record<string, string> {
  const config: Record<string, string> = {};
  for (const [key, { default: value }] of pulumiYaml().declared) {
    if (value === undefined) continue;
    config[`shardfleet:${key}`] = typeof value === "string" ? value : JSON.stringify(value);
  }
  return { ...config, ...set };
}

describe("settings", () => {
  it("are all described in Pulumi.yaml, and Pulumi.yaml describes no other", () => {
    const { declared, commented } = pulumiYaml();
    for (const [key, { description }] of declared) expect(description, key).toBe(true);
    expect([...declared.keys(), ...commented].sort()).toEqual([...CONFIG_KEYS].sort());
    // The secrets are the ones described in a comment, and only those.
    expect(commented.sort()).toEqual([...SECRET_CONFIG_KEYS].sort());
    for (const key of commented) {
      expect(
        pulumiYamlText().match(
          new RegExp(`^ {2}# shardfleet:${key} .*\\n((?: {2}# .*\\n)+)`, "m"),
        )?.[1],
        key,
      ).toMatch(/Optional/);
    }
  });

  it("have a default in Pulumi.yaml unless required (the CLI requires any without)", () => {
    const { declared } = pulumiYaml();
    const withoutDefault = [...declared].filter(([, k]) => !("default" in k)).map(([key]) => key);
    expect(withoutDefault.sort()).toEqual([...REQUIRED_CONFIG_KEYS].sort());
    // A secret key can be neither: without a default it is required, with one every run fails
    // ("must be encrypted as it's secret"), defaults being plaintext.
    expect([...declared].filter(([, k]) => k.secret)).toEqual([]);
    // Each default is of the declared type (the CLI checks that as well).
    for (const [key, k] of declared) {
      if (!("default" in k)) continue;
      const expected = { string: "string", integer: "number", boolean: "boolean", array: "object" };
      expect(typeof k.default, key).toBe(expected[k.type as keyof typeof expected]);
    }
  });

  it("default to the values Pulumi.yaml declares", () => {
    pulumi.runtime.setAllConfig({});
    expect(readSettings()).toEqual(DEFAULT_SETTINGS);
    expect(readSettings().logRetentionDays).toBe(30);
    const defaults = Object.fromEntries(
      [...pulumiYaml().declared]
        .filter(([key]) => key in DEFAULT_SETTINGS)
        .map(([key, k]) => [key, k.default]),
    );
    expect(defaults).toEqual(DEFAULT_SETTINGS);
  });

  it("take Pulumi.yaml's empty defaults of the optional keys as unset", () => {
    pulumi.runtime.setAllConfig(withProjectDefaults({ ...REQUIRED }));
    expect(readSettings()).toEqual(DEFAULT_SETTINGS);
    expect(readDeploymentSettings()).toEqual({
      workerAmiId: AMI,
      adminCidr: ADMIN_CIDR,
      api: { listener: { protocol: "HTTPS", certificateArn: CERTIFICATE_ARN } },
    });

    const { "shardfleet:apiCertificateArn": _, ...withoutCertificate } = REQUIRED;
    pulumi.runtime.setAllConfig(withProjectDefaults(withoutCertificate));
    expect(() => readDeploymentSettings()).toThrow(/shardfleet:apiCertificateArn is required/);
    pulumi.runtime.setAllConfig(
      withProjectDefaults({ ...withoutCertificate, "shardfleet:apiPlainHttp": "true" }),
    );
    expect(readDeploymentSettings().api).toEqual({ listener: { protocol: "HTTP" } });

    pulumi.runtime.setAllConfig(withProjectDefaults({ ...REQUIRED, ...EXISTING_NETWORK }));
    expect(readDeploymentSettings().existingNetwork?.subnetIds).toHaveLength(2);
    // Half of the pair still fails, default or not.
    pulumi.runtime.setAllConfig(withProjectDefaults({ ...REQUIRED, "shardfleet:vpcId": VPC }));
    expect(() => readDeploymentSettings()).toThrow("shardfleet:subnetIds");
  });

  it("accept the visibility timeouts the services accept, and only those", () => {
    const { min, max } = VISIBILITY_TIMEOUT_RANGE;
    for (const [value, ok] of [
      [min - 1, false],
      [min, true],
      [max, true],
      [max + 1, false],
    ] as const) {
      pulumi.runtime.setAllConfig({ "shardfleet:visibilityTimeoutSeconds": String(value) });
      const env = {
        ...bootEnv(schedulerUserData()),
        SHARDFLEET_VISIBILITY_TIMEOUT_S: String(value),
      };
      if (ok) {
        expect(readSettings().visibilityTimeoutSeconds).toBe(value);
        expect(loadConfig(env).worker.visibilityTimeoutSeconds).toBe(value);
      } else {
        expect(() => readSettings()).toThrow("shardfleet:visibilityTimeoutSeconds");
        expect(() => loadConfig(env)).toThrow("SHARDFLEET_VISIBILITY_TIMEOUT_S");
      }
    }
  });

  it.each([
    ["shardfleet:maxReceiveCount", "0"],
    ["shardfleet:maxReceiveCount", "2.5"],
    ["shardfleet:visibilityTimeoutSeconds", "4"],
    ["shardfleet:visibilityTimeoutSeconds", "43201"],
    ["shardfleet:tempObjectExpirationDays", "0"],
    ["shardfleet:namePrefix", "Shard_Fleet"],
    ["shardfleet:instanceTypes", "[]"],
    ["shardfleet:logRetentionDays", "0"],
    ["shardfleet:logRetentionDays", "31"],
    ["shardfleet:logRetentionDays", "3654"],
    ["shardfleet:logRetentionDays", "thirty"],
    ["shardfleet:workerRootDeviceName", "xvda"],
    ["shardfleet:workerRootDeviceName", "/dev/"],
  ])("reject %s = %s, naming the key", (key, value) => {
    pulumi.runtime.setAllConfig({ [key]: value });
    expect(() => readSettings()).toThrow(key);
  });

  it.each([
    ["shardfleet:workerAmiId", "ubuntu"],
    ["shardfleet:adminCidr", "10.0.0.0"],
    ["shardfleet:adminCidr", "10.0.0.300/32"],
    ["shardfleet:subnetIds", '["subnet-0123456789abcdef0"]'],
    ["shardfleet:apiCertificateArn", "arn:aws:iam::123456789012:server-certificate/api"],
    ["shardfleet:apiCertificateArn", "0a1b2c3d-4e5f-6789-abcd-ef0123456789"],
    ["shardfleet:apiDomainName", "https://shardfleet.example.com"],
    ["shardfleet:apiDomainName", "shardfleet.example.com."],
    ["shardfleet:apiDomainName", "localhost"],
    ["shardfleet:apiHostedZoneId", "example.com"],
    ["shardfleet:apiPlainHttp", "yes"],
    ["shardfleet:vpcId", "vpc"],
  ])("reject %s = %s, naming the key", (key, value) => {
    pulumi.runtime.setAllConfig({ ...REQUIRED, ...EXISTING_NETWORK, [key]: value });
    expect(() => readDeploymentSettings()).toThrow(key);
  });

  it.each(Object.keys(REQUIRED))("require %s", (key) => {
    const config: Record<string, string> = { ...REQUIRED };
    delete config[key];
    pulumi.runtime.setAllConfig(config);
    expect(() => readDeploymentSettings()).toThrow(key);
  });

  it("refuse a stack without a certificate unless it asks for plain HTTP", () => {
    pulumi.runtime.setAllConfig({
      "shardfleet:workerAmiId": AMI,
      "shardfleet:adminCidr": ADMIN_CIDR,
    });
    expect(() => readDeploymentSettings()).toThrow(
      /shardfleet:apiCertificateArn is required.*shardfleet:apiPlainHttp/,
    );
    pulumi.runtime.setAllConfig({
      "shardfleet:workerAmiId": AMI,
      "shardfleet:adminCidr": ADMIN_CIDR,
      "shardfleet:apiPlainHttp": "true",
    });
    expect(readDeploymentSettings().api).toEqual({ listener: { protocol: "HTTP" } });
  });

  it("refuse a certificate together with plain HTTP, and a zone without a domain", () => {
    pulumi.runtime.setAllConfig({ ...REQUIRED, "shardfleet:apiPlainHttp": "true" });
    expect(() => readDeploymentSettings()).toThrow("shardfleet:apiPlainHttp");
    pulumi.runtime.setAllConfig({ ...REQUIRED, "shardfleet:apiHostedZoneId": HOSTED_ZONE });
    expect(() => readDeploymentSettings()).toThrow("shardfleet:apiHostedZoneId");
  });

  it("warn that the API is unauthenticated without apiToken, and keep a set one secret", async () => {
    const warn = vi.spyOn(pulumi.log, "warn").mockResolvedValue();
    try {
      pulumi.runtime.setAllConfig({ ...REQUIRED });
      expect(readApiToken()).toBeUndefined();
      expect(warn).toHaveBeenCalledTimes(1);
      expect(warn.mock.calls[0]?.[0]).toMatch(
        /^shardfleet:apiToken is not set: the scheduler API has no authentication/,
      );
      pulumi.runtime.setAllConfig({ ...REQUIRED, "shardfleet:apiToken": API_TOKEN }, [
        "shardfleet:apiToken",
      ]);
      const token = readApiToken();
      expect(token && (await pulumi.isSecret(token))).toBe(true);
      expect(warn).toHaveBeenCalledTimes(1);
    } finally {
      warn.mockRestore();
    }
  });

  it("check apiToken as the scheduler does, naming the key and line, never the value", () => {
    expect(
      apiTokenLines(`${API_TOKEN}\n# the old one\n${"b".repeat(32)}\n`, "shardfleet:apiToken"),
    ).toEqual([API_TOKEN, "b".repeat(32)]);
    const short = "0123456789abcdef";
    expect(() => apiTokenLines(`${API_TOKEN}\n${short}`, "shardfleet:apiToken")).toThrow(
      /^shardfleet:apiToken: the token on line 2 has 16 characters/,
    );
    expect(() => apiTokenLines(short, "shardfleet:apiToken")).toThrow(
      expect.objectContaining({ message: expect.not.stringContaining(short) }),
    );
    expect(() => apiTokenLines("", "shardfleet:apiToken")).toThrow(pulumi.RunError);
  });

  it("read the API's certificate, domain and zone", () => {
    pulumi.runtime.setAllConfig({
      ...REQUIRED,
      "shardfleet:apiDomainName": DOMAIN,
      "shardfleet:apiHostedZoneId": HOSTED_ZONE,
      "shardfleet:apiPlainHttp": "false",
    });
    expect(readDeploymentSettings().api).toEqual({
      listener: { protocol: "HTTPS", certificateArn: CERTIFICATE_ARN },
      domainName: DOMAIN,
      hostedZoneId: HOSTED_ZONE,
    });
  });
});
