import path from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { componentCommand } from "./processes.ts";

describe("componentCommand", () => {
  it("runs the compiled entry point with plain node when the stack itself is compiled", () => {
    const url = pathToFileURL("/opt/pkg/dist/local/processes.js").href;
    expect(componentCommand("worker", url)).toEqual({
      args: [path.join("/opt/pkg/dist", "worker", "main.js")],
      compiled: true,
      parentWatch: `${pathToFileURL("/opt/pkg/dist/local/parent-watch.js").href}?parent=${process.pid}`,
    });
  });

  it("runs the TypeScript sources through tsx when the stack runs from them (tests)", () => {
    const { args, compiled } = componentCommand("scheduler");
    expect(compiled).toBe(false);
    expect(args).toEqual([
      "--import",
      import.meta.resolve("tsx"),
      path.join(import.meta.dirname, "..", "scheduler", "main.ts"),
    ]);
  });

  it("runs the checkout's compiled build when asked to from the sources (the benchmarks)", () => {
    const url = pathToFileURL("/work/repo/src/local/processes.ts").href;
    expect(componentCommand("worker", url, true)).toEqual({
      args: [path.join("/work/repo/dist", "worker", "main.js")],
      compiled: true,
      parentWatch: `${pathToFileURL("/work/repo/dist/local/parent-watch.js").href}?parent=${process.pid}`,
    });
  });
});
