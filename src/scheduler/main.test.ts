/**
 * The scheduler's entry point: as a real process (exit codes, signals) and in-process
 * (`startScheduler`, as the local stack may call it).
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalAws, startLocalAws } from "../../test/support/local-aws.ts";
import { TSX } from "../../test/support/local-cli.ts";
import { systemClock } from "../shared/clock.ts";
import { loadConfig } from "../shared/config.ts";
import { silentLogger } from "../shared/logger.ts";
import { VERSION } from "../shared/version.ts";
import { capacityFromConfig, startScheduler } from "./main.ts";

const entry = path.join(path.dirname(fileURLToPath(import.meta.url)), "main.ts");

let env: LocalAws;
beforeAll(async () => {
  env = await startLocalAws("main-test");
});
afterAll(async () => {
  await env?.close();
});

function awsEnv(): Record<string, string> {
  return {
    PATH: process.env.PATH ?? "",
    AWS_ENDPOINT_URL: env.server.endpoint,
    AWS_REGION: "us-east-1",
    AWS_ACCESS_KEY_ID: "test",
    AWS_SECRET_ACCESS_KEY: "test",
  };
}

/** Runs main.ts with exactly `vars`; resolves with its exit code and output. */
function runMain(vars: Record<string, string>, onStdout?: (line: string) => void) {
  const child = spawn(process.execPath, [...TSX, entry], {
    env: vars,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d;
    onStdout?.(d.toString());
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d;
  });
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    child.once("exit", (code) => resolve({ code, stdout, stderr }));
  });
  return { child, exited };
}

describe("scheduler main", () => {
  it("exits 78 with one line naming a bad setting, and no stack trace", async () => {
    const { code, stderr } = await runMain({ ...awsEnv(), SHARDFLEET_API_PORT: "eighty" }).exited;
    expect(code).toBe(78);
    expect(stderr.trim().split("\n")).toHaveLength(1);
    expect(stderr).toMatch(/SHARDFLEET_API_PORT/);
  });

  it("exits 78 naming the missing work queue", async () => {
    const { code, stderr } = await runMain(awsEnv()).exited;
    expect(code).toBe(78);
    expect(stderr).toMatch(/missing setting SHARDFLEET_WORK_QUEUE_URL/);
  });

  it("serves /healthz, then exits 0 on SIGTERM", async () => {
    let sawListening!: () => void;
    const listening = new Promise<void>((r) => {
      sawListening = r;
    });
    let url = "";
    const run = runMain(
      {
        ...awsEnv(),
        SHARDFLEET_BUCKET: env.resources.bucket,
        SHARDFLEET_WORK_QUEUE_URL: env.resources.queues.work,
        SHARDFLEET_API_PORT: "0",
      },
      (text) => {
        const m = /"url":"(http:[^"]+)"/.exec(text);
        if (m) {
          url = m[1]!;
          sawListening();
        }
      },
    );
    await Promise.race([
      listening,
      run.exited.then((r) => {
        throw new Error(`exited early (${r.code}): ${r.stderr}`);
      }),
    ]);
    const res = await fetch(`${url}/healthz`);
    expect(await res.json()).toEqual({ ok: true });
    run.child.kill("SIGTERM");
    const { code, stdout } = await run.exited;
    expect(code).toBe(0);
    expect(stdout).toMatch(/"component":"scheduler"/);
    expect(stdout).toMatch(/scheduler stopped/);
    expect(JSON.parse(stdout.split("\n")[0]!)).toMatchObject({
      msg: "scheduler starting",
      version: VERSION,
      node: process.version,
    });
  }, 20_000);

  it("startScheduler runs the API and loop in-process until closed", async () => {
    const config = loadConfig({
      SHARDFLEET_BUCKET: env.resources.bucket,
      SHARDFLEET_WORK_QUEUE_URL: env.resources.queues.work,
      SHARDFLEET_API_PORT: "0",
    });
    const running = await startScheduler({ config, clients: env.clients, logger: silentLogger() });
    try {
      expect(running.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const res = await fetch(`${running.url}/operations`);
      expect(await res.json()).toEqual({ operations: [] });
    } finally {
      await running.close();
    }
    await expect(fetch(`${running.url}/healthz`)).rejects.toThrow();
  });
});

describe("fleet wiring (SHARDFLEET_CAPACITY)", () => {
  const deps = { logger: silentLogger(), clock: systemClock };

  it("runs no fleet manager by default", () => {
    expect(capacityFromConfig(loadConfig({}), deps)).toBeUndefined();
  });

  it("names the missing setting for local and ec2 capacity", () => {
    expect(() => capacityFromConfig(loadConfig({ SHARDFLEET_CAPACITY: "local" }), deps)).toThrow(
      /SHARDFLEET_CAPACITY=local needs SHARDFLEET_LOCAL_EC2_URL/,
    );
    expect(() => capacityFromConfig(loadConfig({ SHARDFLEET_CAPACITY: "ec2" }), deps)).toThrow(
      /SHARDFLEET_CAPACITY=ec2 needs SHARDFLEET_EC2_LAUNCH_TEMPLATE/,
    );
    expect(() => loadConfig({ SHARDFLEET_CAPACITY: "k8s" })).toThrow(/SHARDFLEET_CAPACITY/);
  });

  it("builds the EC2 pools from the instance types × subnets settings", () => {
    const config = loadConfig({
      SHARDFLEET_CAPACITY: "ec2",
      SHARDFLEET_EC2_LAUNCH_TEMPLATE: "lt-0abc",
      SHARDFLEET_EC2_INSTANCE_TYPES: "c7g.large, m7g.large",
      SHARDFLEET_EC2_SUBNETS: "subnet-1:eu-west-1a,subnet-2",
    });
    const provided = capacityFromConfig(config, { ...deps, ec2: env.clients.ec2 });
    expect(provided?.pools).toEqual([
      { instanceType: "c7g.large", subnetId: "subnet-1", availabilityZone: "eu-west-1a" },
      { instanceType: "c7g.large", subnetId: "subnet-2" },
      { instanceType: "m7g.large", subnetId: "subnet-1", availabilityZone: "eu-west-1a" },
      { instanceType: "m7g.large", subnetId: "subnet-2" },
    ]);
    expect(provided?.prices["on-demand"]["c7g.large"]).toBeGreaterThan(0);
  });

  it("exits 78 naming the setting when local capacity has no local EC2 URL", async () => {
    const { code, stderr } = await runMain({
      ...awsEnv(),
      SHARDFLEET_WORK_QUEUE_URL: env.resources.queues.work,
      SHARDFLEET_CAPACITY: "local",
    }).exited;
    expect(code).toBe(78);
    expect(stderr.trim().split("\n")).toHaveLength(1);
    expect(stderr).toMatch(/SHARDFLEET_LOCAL_EC2_URL/);
  });
});
