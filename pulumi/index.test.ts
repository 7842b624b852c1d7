/**
 * Unit tests of the stack with Pulumi's mocks: no CLI, no cloud. The mocks record what the
 * program asks for; the tests read those inputs (and the stack outputs) as AWS would get them.
 * Config is set to non-default values before the program is imported, so each check also shows
 * that the setting flows through.
 */
import { readFileSync } from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_SETTINGS, readSettings } from "./config.ts";

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

/** Resources that AWS cannot tag; every other resource must carry the stack's tags. */
const UNTAGGABLE = new Set([
  "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
  "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
  "aws:s3/bucketVersioning:BucketVersioning",
  "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
  "aws:s3/bucketPolicy:BucketPolicy",
  "aws:iam/rolePolicy:RolePolicy",
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
  // The program makes no invokes (policies are built with jsonStringify); echo if one appears.
  call: (args) => args.inputs,
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
    const role = only("aws:iam/role:Role");
    expect(JSON.parse(role.inputs.assumeRolePolicy).Statement).toEqual([
      { Effect: "Allow", Principal: { Service: "ec2.amazonaws.com" }, Action: "sts:AssumeRole" },
    ]);
    const profile = only("aws:iam/instanceProfile:InstanceProfile");
    expect(profile.inputs.role).toBe(`${role.name}-physical`);
    expect(`${profile.name}-physical`).toBe(out.workerInstanceProfileName);
    expect(recorded.filter((r) => r.type.startsWith("aws:iam/rolePolicyAttachment"))).toEqual([]);
    expect(role.inputs.managedPolicyArns).toBeUndefined();
  });

  it("grants only the listed actions, each on its own resources", () => {
    const rolePolicy = only("aws:iam/rolePolicy:RolePolicy");
    expect(rolePolicy.inputs.role).toBe(`${only("aws:iam/role:Role").name}-physical`);
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

describe("every resource", () => {
  it("carries the project and stack tags where AWS can tag it", () => {
    const custom = recorded.filter((r) => r.custom);
    expect(custom.length).toBeGreaterThan(0);
    for (const r of custom) {
      if (UNTAGGABLE.has(r.type)) continue;
      expect(r.inputs.tags, `${r.type} ${r.name}`).toEqual({
        project: "shardfleet",
        stack: "test",
      });
    }
    // The tagged set is what we think it is, so a new untaggable type is a conscious choice.
    expect(
      custom
        .filter((r) => !UNTAGGABLE.has(r.type))
        .map((r) => r.type)
        .sort(),
    ).toEqual([
      "aws:iam/instanceProfile:InstanceProfile",
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

describe("settings", () => {
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
});
