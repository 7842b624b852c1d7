import { describe, expect, it } from "vitest";
import type { BadInputError } from "../errors.ts";
import { manifestSchema, parseOperationSpec } from "./operation.ts";

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

  it("refuses unknown task option keys, naming their path", () => {
    const typo = { ...httpTask, options: { ...httpTask.options, timout: 5 } };
    const err = errorOf({ task: typo });
    expect(err.code).toBe("SPEC_INVALID");
    expect(err.message).toBe("spec task.options.timout: unknown field");
    const nested = errorOf({
      task: { name: "transform", options: { module: "noop", bacthSize: 9 } },
    });
    expect(nested.message).toBe("spec task.options.bacthSize: unknown field");
    // A plugin's own options stay the plugin's business.
    expect(() =>
      parseOperationSpec({
        task: { name: "transform", options: { module: "noop", options: { any: 1 } } },
      }),
    ).not.toThrow();
  });

  it("refuses header names and values undici would refuse on every row", () => {
    const bad = (headers: Record<string, string>) =>
      errorOf({ task: { ...httpTask, options: { ...httpTask.options, headers } } }).message;
    expect(bad({ "x key": "v" })).toMatch(/^spec task\.options\.headers\.x key: .*header name/);
    expect(bad({ "x-key": "a\r\nHost: evil" })).toMatch(
      /^spec task\.options\.headers\.x-key: a header value on one line/,
    );
  });

  it("caps http-enrich concurrency at MAX_HTTP_CONCURRENCY", () => {
    const over = { ...httpTask, options: { ...httpTask.options, concurrency: 201 } };
    expect(errorOf({ task: over }).message).toMatch(/^spec task\.options\.concurrency: .*200/);
  });

  it("refuses plugin names that are paths", () => {
    const err = errorOf({ task: { name: "transform", options: { module: "../../etc/passwd" } } });
    expect(err.message).toMatch(/task\.options\.module/);
  });
});

describe("manifestSchema", () => {
  const stored = {
    v: 1,
    id: "op-1",
    spec: {
      version: 1,
      task: { name: "transform", options: {} },
      shardSize: 2,
      toleratedFailurePercent: 0,
    },
    input: { key: "k", filename: "f.csv", format: "csv", bytes: 1 },
    headers: ["a"],
    createdAt: "2026-01-01T00:00:00.000Z",
    updatedAt: "2026-01-01T00:00:00.000Z",
  };

  it("reads an older release's waiting-for-capacity as the lifecycle state it stood for", () => {
    const waiting = { since: "2026-01-01T00:00:00.000Z", reason: "no spot capacity" };
    const split = {
      ...stored,
      status: "waiting-for-capacity",
      waiting,
      shards: [{ id: "s000000", start: 0, end: 2 }],
    };
    const unsplit = { ...stored, status: "waiting-for-capacity", waiting };
    expect(manifestSchema.parse(split).status).toBe("running");
    expect(manifestSchema.parse(unsplit).status).toBe("splitting");
    expect(manifestSchema.parse(split)).not.toHaveProperty("waiting");
  });

  it("refuses a status that is no lifecycle state", () => {
    expect(manifestSchema.safeParse({ ...stored, status: "sleeping" }).success).toBe(false);
    expect(manifestSchema.safeParse({ ...stored, status: "paused" }).success).toBe(true);
  });
});
