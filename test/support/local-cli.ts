/**
 * The CLI run as a user runs it, a child process of the test, from its sources
 * (bin/shardfleet.js runs the build; .ci/run tests the packed package): a command run to its end
 * (`runNode`), or `shardfleet local` kept running (so it can be SIGKILLed for real), resolved
 * once it printed that it is up.
 */
import { type ChildProcessByStdio, execFile, execFileSync, spawn } from "node:child_process";
import path from "node:path";
import type { Readable } from "node:stream";
import { promisify } from "node:util";

const root = path.resolve(import.meta.dirname, "../..");

/** `node` arguments that load TypeScript sources (then a module to run). */
export const TSX = ["--import", import.meta.resolve("tsx")];
/** `node` arguments that run `shardfleet` from its sources (then its arguments). */
export const CLI = [...TSX, path.join(root, "src", "cli", "main.ts")];

/** What a finished process printed, and its exit code. */
export interface NodeRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `node ARGS` in the repository with only PATH and `env` in its environment; never throws
 * for an exit code (a test checks it). Killed after `timeoutMs`.
 */
export async function runNode(
  args: readonly string[],
  { env = {}, timeoutMs = 30_000 }: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<NodeRun> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [...args], {
      cwd: root,
      env: { PATH: process.env.PATH, ...env },
      timeout: timeoutMs,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

export interface LocalCli {
  readonly child: ChildProcessByStdio<null, Readable, Readable>;
  /** Everything it printed so far. */
  readonly out: { stdout: string; stderr: string };
  /** Its exit code (null when a signal ended it). */
  readonly exited: Promise<number | null>;
  /** The scheduler API URL it printed. */
  readonly apiUrl: string;
}

/** `shardfleet local` started, not yet known to be up. */
export interface LocalCliProcess extends Omit<LocalCli, "apiUrl"> {
  /**
   * Resolves once it printed that it is up; rejects when it exits first (`exited CODE: ` and
   * what it printed) or is not up within the timeout (then it is SIGKILLed).
   */
  readonly up: Promise<void>;
}

/** Spawns `shardfleet local ARGS` with `env` (PATH added). */
export function spawnLocalCli(
  args: readonly string[],
  env: Record<string, string> = {},
  timeoutMs = 90_000,
): LocalCliProcess {
  const child = spawn(process.execPath, [...CLI, "local", ...args], {
    // As bin/shardfleet.js sets it: the SDK's notice that its later releases need Node 22.
    env: {
      PATH: process.env.PATH ?? "",
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const out = { stdout: "", stderr: "" };
  child.stdout.on("data", (d: Buffer) => {
    out.stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    out.stderr += d.toString();
  });
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => resolve(code)),
  );
  const up = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`not up in ${timeoutMs} ms: ${out.stdout}${out.stderr}`));
    }, timeoutMs);
    child.stdout.on("data", () => {
      if (out.stdout.includes("Press Ctrl+C")) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`exited ${code}: ${out.stdout}${out.stderr}`));
    });
  });
  return { child, out, exited, up };
}

/** Starts `shardfleet local ARGS` with `env` (PATH added); rejects if it exits before it is up. */
export async function startLocalCli(
  args: readonly string[],
  env: Record<string, string> = {},
  timeoutMs = 90_000,
): Promise<LocalCli> {
  const { up, ...started } = spawnLocalCli(args, env, timeoutMs);
  await up;
  const apiUrl = /export SHARDFLEET_API_URL=(\S+)/.exec(started.out.stdout)?.[1];
  if (!apiUrl) throw new Error(`no API URL printed: ${started.out.stdout}`);
  return { ...started, apiUrl };
}

/** The pids of `pid`'s child processes (Linux `ps`). */
export function childPids(pid: number): number[] {
  try {
    return execFileSync("ps", ["-o", "pid=", "--ppid", String(pid)], { encoding: "utf8" })
      .split("\n")
      .map((l) => Number(l.trim()))
      .filter((n) => Number.isInteger(n) && n > 0);
  } catch {
    return []; // ps exits 1 when there are none
  }
}
