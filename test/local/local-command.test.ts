/**
 * `shardfleet local` as a user runs it: it comes up, prints the endpoint and the env to use,
 * answers SQS and S3 calls from the AWS SDK, and stops cleanly on SIGINT.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { ListBucketsCommand } from "@aws-sdk/client-s3";
import { GetQueueAttributesCommand, ListQueuesCommand } from "@aws-sdk/client-sqs";
import { request } from "undici";
import { describe, expect, it } from "vitest";
import { createAwsClients } from "../../src/shared/aws.ts";

// The CLI from its sources (bin/shardfleet.js runs the build; .ci/run tests the packed package).
const cli = [
  "--import",
  import.meta.resolve("tsx"),
  path.resolve(import.meta.dirname, "../../src/cli/main.ts"),
];

describe("shardfleet local", () => {
  it("serves SQS, S3 and the API, then stops on SIGINT", async () => {
    const child = spawn(
      process.execPath,
      [
        ...cli,
        "local",
        "--workers",
        "0",
        "--aws-port",
        "0",
        "--api-port",
        "0",
        "--log-dir",
        path.join(import.meta.dirname, "../../.shardfleet/test-logs"),
      ],
      { env: { PATH: process.env.PATH }, stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<number | null>((resolve) =>
      child.once("exit", (code) => resolve(code)),
    );
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`not up in 30 s: ${stdout}${stderr}`)),
          30_000,
        );
        child.stdout.on("data", () => {
          if (stdout.includes("Press Ctrl+C")) {
            clearTimeout(timer);
            resolve();
          }
        });
        void exited.then((code) => reject(new Error(`exited ${code}: ${stderr}`)));
      });

      const endpoint = /export AWS_ENDPOINT_URL=(\S+)/.exec(stdout)?.[1];
      const apiUrl = /export SHARDFLEET_API_URL=(\S+)/.exec(stdout)?.[1];
      expect(endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const clients = createAwsClients({
        endpoint,
        region: "us-east-1",
        credentials: { accessKeyId: "test", secretAccessKey: "test" },
      });
      try {
        const queues = await clients.sqs.send(new ListQueuesCommand({}));
        const names = (queues.QueueUrls ?? []).map((u) => u.split("/").pop());
        expect(names).toEqual(
          expect.arrayContaining(["shardfleet-work", "shardfleet-straggler", "shardfleet-dlq"]),
        );
        const work = queues.QueueUrls!.find((u) => u.endsWith("/shardfleet-work"));
        const attrs = await clients.sqs.send(
          new GetQueueAttributesCommand({ QueueUrl: work, AttributeNames: ["RedrivePolicy"] }),
        );
        expect(attrs.Attributes?.RedrivePolicy).toContain("shardfleet-dlq");
        const buckets = await clients.s3.send(new ListBucketsCommand({}));
        expect(buckets.Buckets?.map((b) => b.Name)).toContain("shardfleet-local");
      } finally {
        clients.destroy();
      }
      const health = await request(`${apiUrl}/healthz`);
      expect(health.statusCode).toBe(200);
      await health.body.dump();

      child.kill("SIGINT");
      expect(await exited).toBe(0);
      expect(stdout).toContain("stopped");
    } finally {
      child.kill("SIGKILL");
    }
  }, 60_000);
});
