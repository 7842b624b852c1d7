/**
 * `shardfleet local` as a user runs it: it comes up, prints the endpoint and the env to use,
 * answers SQS and S3 calls from the AWS SDK, and stops cleanly on SIGINT.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { ListBucketsCommand } from "@aws-sdk/client-s3";
import { GetQueueAttributesCommand, ListQueuesCommand } from "@aws-sdk/client-sqs";
import { request } from "undici";
import { describe, expect, it } from "vitest";
import { ApiClient } from "../../src/cli/api-client.ts";
import { createAwsClients } from "../../src/shared/aws.ts";
import { HEALTH_PID_HEADER } from "../../src/shared/contracts/api.ts";
import { spawnLocalCli, startLocalCli } from "../support/local-cli.ts";

/** An ephemeral stack with no instances on free ports, logging under .shardfleet/test-logs. */
const LOCAL_ARGS = [
  "--workers",
  "0",
  "--aws-port",
  "0",
  "--api-port",
  "0",
  "--log-dir",
  path.join(import.meta.dirname, "../../.shardfleet/test-logs"),
  "--ephemeral",
];

describe("shardfleet local", () => {
  it("serves SQS, S3 and the API, then stops on SIGINT", async () => {
    const { child, out, exited, up } = spawnLocalCli(LOCAL_ARGS, {}, 30_000);
    try {
      await up;
      const { stdout } = out;
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
      expect(out.stdout).toContain("stopped");
    } finally {
      child.kill("SIGKILL");
    }
  }, 60_000);
});

/** Starts `shardfleet local --workers 0` with `env`; `up` resolves once it is up (or rejects). */
const startLocal = (env: Record<string, string>) => spawnLocalCli(LOCAL_ARGS, env, 30_000);

describe("shardfleet local: the shell's SHARDFLEET_* settings", () => {
  it("passes them to the scheduler (its egress policy answers by them), not the stack's own", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "shardfleet-local-"));
    const local = await startLocal({
      SHARDFLEET_EGRESS_ALLOW: "127.0.0.1:9",
      SHARDFLEET_BUCKET: "someone-elses-bucket",
    });
    try {
      await local.up;
      expect(local.out.stdout).toContain(
        "settings         SHARDFLEET_EGRESS_ALLOW from this shell; ignored (the stack sets them): SHARDFLEET_BUCKET",
      );
      const apiUrl = /export SHARDFLEET_API_URL=(\S+)/.exec(local.out.stdout)?.[1];
      const client = new ApiClient(apiUrl);
      const csv = path.join(dir, "in.csv");
      await writeFile(csv, "n\n1\n");
      const spec = (port: number) => ({
        task: {
          name: "http-enrich",
          options: { url: `http://127.0.0.1:${port}/{n}`, results: { v: "v" } },
        },
      });
      // The address the shell allowed is accepted; its neighbour is refused at intake.
      await expect(client.submit(csv, spec(9))).resolves.toMatchObject({ status: "queued" });
      await expect(client.submit(csv, spec(10))).rejects.toThrow(
        /egress refused: 127\.0\.0\.1:10 is a loopback address/,
      );
      local.child.kill("SIGINT");
      expect(await local.exited).toBe(0);
    } finally {
      local.child.kill("SIGKILL");
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it("refuses a bad setting before starting anything: exit 78, one line naming it", async () => {
    const local = await startLocal({ SHARDFLEET_EGRESS_ALLOW: "127.0.0.1:http" });
    try {
      await expect(local.up).rejects.toThrow(/exited 78/);
      expect(local.out.stderr.trim().split("\n")).toHaveLength(1);
      expect(local.out.stderr).toMatch(/SHARDFLEET_EGRESS_ALLOW.*port must be 1-65535/);
      expect(local.out.stdout).toBe("");
    } finally {
      local.child.kill("SIGKILL");
    }
  }, 30_000);
});

describe("shardfleet local: readiness from its own scheduler", () => {
  it("an orphan answering on the API port stops the start in one line naming it (exit 69)", async () => {
    // What an orphaned scheduler of an earlier stack answers: 200 from another process.
    const orphan = createServer((_req, res) => {
      res.writeHead(200, {
        "content-type": "application/json",
        [HEALTH_PID_HEADER]: String(process.pid),
      });
      res.end('{"ok":true}');
    });
    await new Promise<void>((resolve) => orphan.listen(0, "127.0.0.1", resolve));
    const { port } = orphan.address() as AddressInfo;
    try {
      const started = startLocalCli(
        ["--workers", "0", "--aws-port", "0", "--api-port", String(port), "--ephemeral"],
        {},
      );
      const err = await started.then(
        () => undefined,
        (e: Error) => e,
      );
      expect(err?.message).toMatch(/^exited 69: /);
      const stderr = err?.message.replace(/^exited 69: /, "").trim() ?? "";
      expect(stderr.split("\n")).toHaveLength(1);
      expect(stderr).toContain(
        `http://127.0.0.1:${port} is answered by another process (pid ${process.pid}), not the scheduler this stack started`,
      );
    } finally {
      orphan.close();
    }
  }, 120_000);
});
