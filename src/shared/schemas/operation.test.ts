import { describe, expect, it } from "vitest";
import type { BadInputError } from "../errors.ts";
import { parseOperationSpec } from "./operation.ts";

function errorOf(raw: unknown): BadInputError {
  try {
    parseOperationSpec(raw);
  } catch (err) {
    return err as BadInputError;
  }
  throw new Error("expected the spec to be rejected");
}

const httpTask = { name: "http-enrich", options: { url: "http://x/{id}", results: { a: "b" } } };

describe("parseOperationSpec", () => {
  it("fills defaults for the spec and the task options", () => {
    const spec = parseOperationSpec({ task: httpTask });
    expect(spec.shardSize).toBe(500);
    expect(spec.task.name).toBe("http-enrich");
    if (spec.task.name === "http-enrich") {
      expect(spec.task.options.concurrency).toBe(150);
      expect(spec.task.options.method).toBe("GET");
    }
  });

  it("names the JSON path of a bad field", () => {
    const err = errorOf({ task: httpTask, shardSize: -1 });
    expect(err.code).toBe("SPEC_INVALID");
    expect(err.message).toMatch(/^spec shardSize:/);
  });

  it("names the path inside task options", () => {
    const err = errorOf({ task: { name: "http-enrich", options: { url: "http://x" } } });
    expect(err.code).toBe("SPEC_INVALID");
    expect(err.message).toMatch(/task\.options\.results/);
  });

  it("rejects an unknown task with its own code", () => {
    const err = errorOf({ task: { name: "mine-bitcoin" } });
    expect(err.code).toBe("UNKNOWN_TASK");
    expect(err.message).toMatch(/mine-bitcoin/);
  });

  it("rejects unknown top-level fields (typos must not pass silently)", () => {
    expect(errorOf({ task: httpTask, shardsize: 10 }).message).toMatch(/shardsize/);
  });

  it("refuses plugin names that are paths", () => {
    const err = errorOf({ task: { name: "transform", options: { module: "../../etc/passwd" } } });
    expect(err.message).toMatch(/task\.options\.module/);
  });
});
