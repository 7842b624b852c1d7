/**
 * Starts shardfleet components (scheduler, worker) as child processes running the same entry
 * points as in AWS, with their own environment and a log file each. Each child ends when the
 * process that started it ends, however it ends (./parent-watch.ts).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

export type Component = "scheduler" | "worker";

/**
 * How to start a component: the way this module itself runs, unless `compiled` says otherwise.
 * Compiled (dist/, the installed package, `shardfleet local`): plain `node` on the compiled
 * entry point. From the TypeScript sources (vitest, `node --import tsx`, a checkout without a
 * build): the sources through tsx, a development dependency, so tests never run a stale build.
 * `compiled: true` from the sources runs the checkout's `dist/` (the benchmarks: tsx compiling
 * every module at each start is not what they measure); it must have been built.
 */
export function componentCommand(
  component: Component,
  moduleUrl: string = import.meta.url,
  compiled: boolean = !moduleUrl.endsWith(".ts"),
): { args: string[]; compiled: boolean; parentWatch: string } {
  const fromSources = moduleUrl.endsWith(".ts");
  const here = path.dirname(fileURLToPath(moduleUrl));
  // src/ or dist/ (this module is in its local/ folder); a compiled run from the sources: dist/.
  const root =
    compiled && fromSources ? path.resolve(here, "..", "..", "dist") : path.resolve(here, "..");
  const entry = path.join(root, component, compiled ? "main.js" : "main.ts");
  // ./parent-watch.ts, compiled or not as the component runs, told this process's pid.
  const parentWatch = `${pathToFileURL(path.join(root, "local", compiled ? "parent-watch.js" : "parent-watch.ts")).href}?parent=${process.pid}`;
  return {
    args: compiled ? [entry] : ["--import", import.meta.resolve("tsx"), entry],
    compiled,
    parentWatch,
  };
}

export interface ComponentProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly logFile: string | undefined;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  readonly exited: Promise<number | string>;
  /** SIGTERM, then SIGKILL after `graceMs`. Resolves when the process is gone. */
  stop(graceMs?: number): Promise<number | string>;
  /** SIGKILL at once: an instance lost without notice. */
  kill(): Promise<number | string>;
}

/** Only the variables a component needs, so a developer's shell cannot leak settings into it. */
function baseEnv(): NodeJS.ProcessEnv {
  const keep = ["PATH", "HOME", "TMPDIR", "TZ", "LANG", "NODE_OPTIONS"];
  return {
    ...Object.fromEntries(keep.filter((k) => process.env[k]).map((k) => [k, process.env[k]])),
    // See bin/shardfleet.js: the SDK's notice that its later releases need Node 22 (README).
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
  };
}

export function spawnComponent(
  component: Component,
  options: {
    name: string;
    env: NodeJS.ProcessEnv;
    logDir?: string;
    /** Run the compiled build (see `componentCommand`). @default as this module runs */
    compiled?: boolean;
  },
): ComponentProcess {
  let logFile: string | undefined;
  // A local component never talks to a real instance metadata service (a link-local address off
  // this machine): without a local endpoint, IMDS is off for it and for the SDK's credential chain.
  const imds = options.env.AWS_EC2_METADATA_SERVICE_ENDPOINT
    ? {}
    : { AWS_EC2_METADATA_DISABLED: "true" };
  const { args, compiled, parentWatch } = componentCommand(
    component,
    import.meta.url,
    options.compiled,
  );
  const entry = args.at(-1) ?? "";
  if (compiled && !existsSync(entry)) {
    throw new Error(`${entry} does not exist: run \`npm run build\` first`);
  }
  // The parent watch goes just before the entry point (after tsx, which it needs from sources),
  // with the IPC channel it watches: the child ends when this process does, however it ends.
  const child = spawn(
    process.execPath,
    [...args.slice(0, -1), "--import", parentWatch, ...args.slice(-1)],
    {
      env: { ...baseEnv(), ...imds, ...options.env },
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    },
  );
  if (options.logDir) {
    mkdirSync(options.logDir, { recursive: true });
    logFile = path.join(options.logDir, `${options.name}.log`);
    const out = createWriteStream(logFile, { flags: "a" });
    child.stdout?.pipe(out);
    child.stderr?.pipe(out);
  } else {
    child.stdout?.resume();
    child.stderr?.resume();
  }
  const exited = new Promise<number | string>((resolve) => {
    child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown"));
  });
  const alive = () => child.exitCode === null && child.signalCode === null;
  return {
    name: options.name,
    child,
    logFile,
    exited,
    async stop(graceMs = 10_000) {
      if (alive()) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => alive() && child.kill("SIGKILL"), graceMs);
        const code = await exited;
        clearTimeout(timer);
        return code;
      }
      return exited;
    },
    async kill() {
      if (alive()) child.kill("SIGKILL");
      return exited;
    },
  };
}
