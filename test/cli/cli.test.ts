/**
 * The CLI and the component entry points as a user meets them: help text, and every failure as
 * one line on stderr with its documented exit code — never a stack trace.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = path.resolve(import.meta.dirname, "../..");
const bin = path.join(root, "bin", "shardfleet.js");
const tsx = import.meta.resolve("tsx");

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, args, {
      cwd: root,
      env: { PATH: process.env.PATH, ...env },
      timeout: 30_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

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

  it("lists its commands in --help", async () => {
    const r = await run([bin, "--help"]);
    expect(r.code).toBe(0);
    for (const cmd of ["local", "submit", "status", "download", "demo"]) {
      expect(r.stdout).toContain(cmd);
    }
    expect(r.stdout).toMatch(/Exit codes/);
  });

  it("explains a missing input file in one line (exit 64)", async () => {
    const spec = path.join(dir, "spec.json");
    await writeFile(spec, "{}");
    const r = await run([bin, "submit", path.join(dir, "nope.xlsx"), "--spec", spec]);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/cannot read .*nope\.xlsx/);
    expectOneLine(r);
  });

  it("explains a spec file that is not JSON in one line (exit 64)", async () => {
    const spec = path.join(dir, "bad.json");
    await writeFile(spec, "{task:");
    const r = await run([bin, "submit", spec, "--spec", spec]);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/not valid JSON/);
    expectOneLine(r);
  });

  it("says the API is unreachable in one line (exit 69)", async () => {
    const r = await run([bin, "status", "op-1", "--api", "http://127.0.0.1:9"]);
    expect(r.code).toBe(69);
    expect(r.stderr).toMatch(/cannot reach the shardfleet API at http:\/\/127\.0\.0\.1:9/);
    expectOneLine(r);
  });

  it("rejects a bad option value (exit 64)", async () => {
    const r = await run([bin, "local", "--workers", "many"]);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/--workers must be a whole number/);
  });

  for (const component of ["scheduler", "worker"]) {
    it(`stops the ${component} on bad configuration with one line naming the setting (exit 78)`, async () => {
      const r = await run(["--import", tsx, path.join(root, "src", component, "main.ts")], {
        SHARDFLEET_API_PORT: "eighty",
      });
      expect(r.code).toBe(78);
      expect(r.stderr).toMatch(/SHARDFLEET_API_PORT/);
      expectOneLine(r);
    });
  }
});
