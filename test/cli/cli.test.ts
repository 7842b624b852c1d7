/**
 * The CLI and the component entry points as a user meets them: help text, and every failure as
 * one line on stderr with its documented exit code — never a stack trace.
 */
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { systemClock } from "../../src/shared/clock.ts";
import { parseApiTokens } from "../../src/shared/config.ts";
import { testApp } from "../support/api.ts";
import { type LocalAws, startLocalAws } from "../support/local-aws.ts";
import { CLI, type NodeRun, runNode, TSX } from "../support/local-cli.ts";
import { testManifest } from "../support/manifests.ts";
import { seedManifest } from "../support/seed-manifest.ts";

const root = path.resolve(import.meta.dirname, "../..");

type Run = NodeRun;
const run = (args: string[], env: NodeJS.ProcessEnv = {}) => runNode(args, { env });

function expectOneLine(r: Run) {
  const lines = r.stderr.trim().split("\n");
  expect(lines).toHaveLength(1);
  expect(r.stderr).not.toMatch(/\n\s+at /); // no stack frames
}

describe("shardfleet CLI", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "shardfleet-cli-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("prints the package's version with --version", async () => {
    const { version } = JSON.parse(await readFile(path.join(root, "package.json"), "utf-8")) as {
      version: string;
    };
    const r = await run([...CLI, "--version"]);
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 0, stdout: `${version}\n` });
  });

  it("lists its commands in --help", async () => {
    const r = await run([...CLI, "--help"]);
    expect(r.code).toBe(0);
    for (const cmd of [
      "local",
      "submit",
      "status",
      "download",
      "demo",
      "cancel",
      "pause",
      "resume",
    ]) {
      expect(r.stdout).toContain(cmd);
    }
    expect(r.stdout).toMatch(/Exit codes/);
  });

  it("explains a missing input file in one line (exit 64)", async () => {
    const spec = path.join(dir, "spec.json");
    await writeFile(spec, "{}");
    const r = await run([...CLI, "submit", path.join(dir, "nope.xlsx"), "--spec", spec]);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/cannot read .*nope\.xlsx/);
    expectOneLine(r);
  });

  it("explains a spec file that is not JSON in one line (exit 64)", async () => {
    const spec = path.join(dir, "bad.json");
    await writeFile(spec, "{task:");
    const r = await run([...CLI, "submit", spec, "--spec", spec]);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/not valid JSON/);
    expectOneLine(r);
  });

  it("says the API is unreachable in one line (exit 69)", async () => {
    const r = await run([...CLI, "status", "op-1", "--api", "http://127.0.0.1:9"]);
    expect(r.code).toBe(69);
    expect(r.stderr).toMatch(/cannot reach the shardfleet API at http:\/\/127\.0\.0\.1:9/);
    expectOneLine(r);
  });

  it("rejects a bad option value (exit 64)", async () => {
    const r = await run([...CLI, "local", "--workers", "many"]);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/--workers must be a whole number/);
  });

  it("stops the scheduler on a short API token with one line naming the setting (exit 78)", async () => {
    const file = path.join(dir, "api-tokens");
    await writeFile(file, "# the current token\ntoo-short-to-guess-safely\n");
    const r = await run([...TSX, path.join(root, "src", "scheduler", "main.ts")], {
      SHARDFLEET_API_TOKENS_FILE: file,
    });
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/SHARDFLEET_API_TOKENS_FILE: the token on line 2 has 25 characters/);
    expect(r.stderr).not.toContain("too-short");
    expectOneLine(r);
  });

  it("stops the scheduler with one line when its token parameter cannot be read (exit 78)", async () => {
    const r = await run([...TSX, path.join(root, "src", "scheduler", "main.ts")], {
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
      AWS_REGION: "us-east-1",
      AWS_ACCESS_KEY_ID: "test",
      AWS_SECRET_ACCESS_KEY: "test",
      // Nothing listens there: SSM has no local peer.
      AWS_ENDPOINT_URL: "http://127.0.0.1:9",
      SHARDFLEET_WORK_QUEUE_URL: "http://127.0.0.1:9/000000000000/work",
      SHARDFLEET_API_TOKEN_SSM_PARAMETER: "/shardfleet/api-tokens",
    });
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(
      /cannot start: cannot read SHARDFLEET_API_TOKEN_SSM_PARAMETER=\/shardfleet\/api-tokens from SSM Parameter Store \(.*ECONNREFUSED/,
    );
    expectOneLine(r);
  });

  for (const component of ["scheduler", "worker"]) {
    it(`stops the ${component} on bad configuration with one line naming the setting (exit 78)`, async () => {
      const r = await run([...TSX, path.join(root, "src", component, "main.ts")], {
        SHARDFLEET_API_PORT: "eighty",
      });
      expect(r.code).toBe(78);
      expect(r.stderr).toMatch(/SHARDFLEET_API_PORT/);
      expectOneLine(r);
    });
  }
});

describe("shardfleet CLI against an API that requires a token", () => {
  const TOKEN = "c0ffee".repeat(8);
  let env: LocalAws;
  let api: FastifyInstance;
  let url: string;
  beforeAll(async () => {
    env = await startLocalAws("cli-token-test");
    api = testApp(env, { apiTokens: [TOKEN] }).app;
    url = await api.listen({ host: "127.0.0.1", port: 0 });
  });
  afterAll(async () => {
    await api?.close();
    await env?.close();
  });

  it("sends SHARDFLEET_API_TOKEN, or --token, as the bearer token", async () => {
    const fromEnv = await run([...CLI, "status", "--api", url], { SHARDFLEET_API_TOKEN: TOKEN });
    expect(fromEnv).toMatchObject({ code: 0, stdout: "no operations yet\n" });
    const fromOption = await run([...CLI, "status", "--api", url, "--token", TOKEN], {
      SHARDFLEET_API_TOKEN: "not-this-one",
    });
    expect(fromOption).toMatchObject({ code: 0, stdout: "no operations yet\n" });
  });

  it("turns a 401 into one line and exit 77, with or without a token", async () => {
    const without = await run([...CLI, "status", "--api", url]);
    expect(without.code).toBe(77);
    expect(without.stderr).toBe(
      "shardfleet: the API requires a token (401): set SHARDFLEET_API_TOKEN or --token\n",
    );
    const wrong = await run([...CLI, "cost", "op-1", "--api", url, "--token", "f".repeat(48)]);
    expect(wrong.code).toBe(77);
    expect(wrong.stderr).toMatch(/the API refused the token \(401: invalid bearer token\)/);
    expectOneLine(wrong);
  });

  it("writes no file when a download is refused", async () => {
    const out = path.join(await mkdtemp(path.join(tmpdir(), "shardfleet-cli-dl-")), "r.xlsx");
    const r = await run([...CLI, "download", "op-1", "--api", url, "-o", out]);
    expect(r.code).toBe(77);
    expectOneLine(r);
    expect(existsSync(out)).toBe(false);
    await rm(path.dirname(out), { recursive: true, force: true });
  });

  it("refuses a token of two lines before calling the API (exit 64)", async () => {
    const r = await run([...CLI, "status", "--api", url], {
      SHARDFLEET_API_TOKEN: `${TOKEN}\n${TOKEN}`,
    });
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/must be one token: no spaces or line breaks/);
    expectOneLine(r);
  });

  it("says where the token comes from in --help, without printing it", async () => {
    const r = await run([...CLI, "submit", "--help"], { SHARDFLEET_API_TOKEN: TOKEN });
    expect(r.stdout).toMatch(/--token <token>/);
    expect(r.stdout).toMatch(/SHARDFLEET_API_TOKEN/);
    expect(r.stdout).not.toContain(TOKEN);
  });
});

describe("shardfleet token create, whoami and status with tenants", () => {
  let env: LocalAws;
  let api: FastifyInstance | undefined;
  beforeAll(async () => {
    env = await startLocalAws("cli-tenants-test");
  });
  afterAll(async () => {
    await api?.close();
    await env?.close();
  });

  it("mints a token printed once with the line that stores its hash; whoami names the tenant", async () => {
    const minted = await run([
      ...CLI,
      "token",
      "create",
      "--tenant",
      "acme",
      "--max-operations",
      "2",
    ]);
    expect(minted.code).toBe(0);
    const [, token, , line] = minted.stdout.trim().split("\n");
    expect(token).toMatch(/^[0-9a-f]{64}$/);
    expect(line).toMatch(/^tenant=acme sha256=[0-9a-f]{64} max-operations=2$/);
    expect(line).not.toContain(token!);
    api = testApp(env, { apiTokens: parseApiTokens(line!, "line") }).app;
    const url = await api.listen({ host: "127.0.0.1", port: 0 });
    const me = await run([...CLI, "whoami", "--api", url], { SHARDFLEET_API_TOKEN: token });
    expect(me).toMatchObject({
      code: 0,
      stdout: "tenant acme (member); caps: operations 2, instances fleet cap, hourly fleet cap\n",
    });
    const other = await run([...CLI, "whoami", "--api", url], {
      SHARDFLEET_API_TOKEN: "ab".repeat(32),
    });
    expect(other.code).toBe(77);
  });

  it("refuses a bad tenant name or role with exit 64 and one line", async () => {
    for (const args of [
      ["--tenant", "Acme Corp"],
      ["--tenant", "acme", "--role", "root"],
    ]) {
      const r = await run([...CLI, "token", "create", ...args]);
      expect(r.code).toBe(64);
      expectOneLine(r);
    }
  });
});

describe("shardfleet cancel, pause and resume", () => {
  let env: LocalAws;
  let api: FastifyInstance | undefined;
  beforeAll(async () => {
    env = await startLocalAws("cli-control-test");
  });
  afterAll(async () => {
    await api?.close();
    await env?.close();
  });

  it("prints `ID STATUS` and exits 0; a state that does not allow it is one line and exit 1", async () => {
    const id = "op-cli-control";
    await seedManifest(
      { store: env.store, clock: systemClock },
      testManifest(id, { status: "running" }),
    );
    api = testApp(env).app;
    const url = await api.listen({ host: "127.0.0.1", port: 0 });
    const pause = await run([...CLI, "pause", id, "--api", url]);
    expect({ code: pause.code, stdout: pause.stdout }).toEqual({
      code: 0,
      stdout: `${id} paused\n`,
    });
    const resume = await run([...CLI, "resume", id, "--api", url]);
    expect({ code: resume.code, stdout: resume.stdout }).toEqual({
      code: 0,
      stdout: `${id} running\n`,
    });
    const cancel = await run([...CLI, "cancel", id, "--api", url]);
    expect({ code: cancel.code, stdout: cancel.stdout }).toEqual({
      code: 0,
      stdout: `${id} cancelling\n`,
    });
    const refused = await run([...CLI, "resume", id, "--api", url]);
    expect(refused.code).toBe(1);
    expectOneLine(refused);
    expect(refused.stderr).toContain(`(409): cannot resume operation ${id}: it is cancelling`);
    const unknown = await run([...CLI, "cancel", "op-nope", "--api", url]);
    expect(unknown.code).toBe(1);
    expectOneLine(unknown);
  });
});

describe("shardfleet retry", () => {
  let env: LocalAws;
  let api: FastifyInstance | undefined;
  beforeAll(async () => {
    env = await startLocalAws("cli-retry-test");
  });
  afterAll(async () => {
    await api?.close();
    await env?.close();
  });

  it("prints `ID STATUS retry N` and exits 0; a bad option or state is one line and exit 1; a bad --set exits 64", async () => {
    const id = "op-cli-retry";
    await seedManifest(
      { store: env.store, clock: systemClock },
      testManifest(id, {
        status: "succeeded-with-failures",
        spec: {
          version: 1,
          task: { name: "transform", options: { module: "upper" } },
          shardSize: 2,
          toleratedFailurePercent: 50,
        },
        rows: 2,
        shards: [{ id: "s000000", start: 0, end: 2 }],
      }),
    );
    api = testApp(env).app;
    const url = await api.listen({ host: "127.0.0.1", port: 0 });
    const badOption = await run([...CLI, "retry", id, "--set", "batchSize=0", "--api", url]);
    expect(badOption.code).toBe(1);
    expectOneLine(badOption);
    expect(badOption.stderr).toContain("(400): body options.batchSize");
    const badSet = await run([...CLI, "retry", id, "--set", "batchSize", "--api", url]);
    expect(badSet.code).toBe(64);
    expectOneLine(badSet);
    const ok = await run([...CLI, "retry", id, "--set", "batchSize=16", "--api", url]);
    expect({ code: ok.code, stdout: ok.stdout }).toEqual({
      code: 0,
      stdout: `${id} running retry 1\n`,
    });
    const again = await run([...CLI, "retry", id, "--api", url]);
    expect(again.code).toBe(1);
    expectOneLine(again);
    expect(again.stderr).toContain(`(409): cannot retry operation ${id}: it is running`);
  });
});
