/** `withCapsApplied`: an operation's `caps.concurrency` replaces http-enrich's concurrency. */
import { describe, expect, it } from "vitest";
import type { TaskSpec } from "../shared/schemas/tasks.ts";
import { withCapsApplied } from "./shard-processor.ts";

describe("withCapsApplied", () => {
  const http = { name: "http-enrich", options: { concurrency: 150 } } as unknown as TaskSpec;

  it("replaces http-enrich's concurrency with the operation's cap", () => {
    const task = withCapsApplied(http, { caps: { concurrency: 12 } });
    expect(task).toEqual({ name: "http-enrich", options: { concurrency: 12 } });
    expect(http.options).toEqual({ concurrency: 150 }); // not mutated
  });

  it("leaves the task alone without a concurrency cap, and other tasks always", () => {
    expect(withCapsApplied(http, {})).toBe(http);
    expect(withCapsApplied(http, { caps: { maxInstances: 2 } })).toBe(http);
    const transform = { name: "transform", options: { module: "upper" } } as unknown as TaskSpec;
    expect(withCapsApplied(transform, { caps: { concurrency: 3 } })).toBe(transform);
  });
});
