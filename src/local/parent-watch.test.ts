/**
 * The parent watch: a child started as the local stack starts its components (the watch
 * preloaded, an IPC channel) shuts itself down when its parent is SIGKILLed, and does not keep
 * a finished child alive.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { isRunning as alive } from "../../test/support/processes.ts";
import { waitFor } from "../../test/support/wait.ts";

const watch = new URL("./parent-watch.ts", import.meta.url);
const tsx = import.meta.resolve("tsx");

/** A parent that starts `childScript` as the stack starts a component and prints its pid. */
function parentOf(childScript: string) {
  const parentScript = `
    import { spawn } from "node:child_process";
    const watch = ${JSON.stringify(watch.href)} + "?parent=" + process.pid;
    const child = spawn(process.execPath, ["--import", ${JSON.stringify(tsx)}, "--import", watch, "-e", ${JSON.stringify(childScript)}], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    console.log("child " + child.pid);
    child.on("exit", (code) => console.log("child exited " + code));
  `;
  const parent = spawn(process.execPath, ["--input-type=module", "-e", parentScript], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  parent.stdout.on("data", (d: Buffer) => {
    out += d.toString();
  });
  return { parent, output: () => out };
}

const pids: number[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const pid of pids.splice(0)) if (alive(pid)) process.kill(pid, "SIGKILL");
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

const LONG_LIVED = (marker: string) => `
  setInterval(() => {}, 1000);
  process.on("SIGTERM", () => {
    require("node:fs").writeFileSync(${JSON.stringify(marker)}, "drained");
    process.exit(0);
  });
  console.log("ready");
`;

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "shardfleet-parent-watch-"));
  dirs.push(dir);
  return dir;
}

describe("parent watch", () => {
  it("a child whose parent is SIGKILLed runs its own SIGTERM shutdown and exits", async () => {
    const marker = path.join(await tempDir(), "shutdown");
    const { parent, output } = parentOf(LONG_LIVED(marker));
    if (parent.pid) pids.push(parent.pid);
    const childPid = await waitFor("the child to be ready", async () => {
      const m = /child (\d+)/.exec(output());
      return m && output().includes("ready") ? Number(m[1]) : undefined;
    });
    pids.push(childPid);

    parent.kill("SIGKILL");
    await waitFor("the orphaned child to exit", async () => (alive(childPid) ? undefined : true));
    expect(await readFile(marker, "utf8")).toBe("drained");
  }, 60_000);

  it("a child whose parent died while it was starting exits too", async () => {
    const { parent, output } = parentOf(LONG_LIVED(path.join(await tempDir(), "shutdown")));
    if (parent.pid) pids.push(parent.pid);
    // Killed as soon as the child is spawned: its IPC channel is gone before the watch loads.
    const childPid = await waitFor(
      "the child's pid",
      async () => {
        const m = /child (\d+)/.exec(output());
        return m ? Number(m[1]) : undefined;
      },
      20_000,
      5,
    );
    parent.kill("SIGKILL");
    pids.push(childPid);
    await waitFor("the orphaned child to exit", async () => (alive(childPid) ? undefined : true));
  }, 60_000);

  it("does not keep a finished child alive", async () => {
    const { parent, output } = parentOf(`setTimeout(() => {}, 100);`);
    if (parent.pid) pids.push(parent.pid);
    const exited = new Promise<number | null>((resolve) => parent.once("exit", resolve));
    expect(await exited).toBe(0);
    expect(output()).toContain("child exited 0");
  }, 60_000);
});
