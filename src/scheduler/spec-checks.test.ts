import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseEgressAllow } from "../shared/egress.ts";
import type { BadInputError } from "../shared/errors.ts";
import { parseOperationSpec } from "../shared/schemas/operation.ts";
import { checkSpec, type SpecCheckOptions } from "./spec-checks.ts";

const HEADERS = ["id", "host", "name"];

async function refusal(
  task: { name: string; options: Record<string, unknown> },
  options: SpecCheckOptions = {},
): Promise<BadInputError | undefined> {
  try {
    await checkSpec(parseOperationSpec({ task }), HEADERS, options);
    return undefined;
  } catch (err) {
    return err as BadInputError;
  }
}

const http = (url: string, extra: Record<string, unknown> = {}) => ({
  name: "http-enrich",
  options: { url, results: { v: "v" }, ...extra },
});

describe("checkSpec: http-enrich", () => {
  it("accepts a public URL whose placeholders name header columns", async () => {
    expect(await refusal(http("https://registry.example/tax/{id}?n={name}"))).toBeUndefined();
    expect(await refusal(http("http://{host}/x"))).toBeUndefined();
  });

  it("names the unknown column and where it is", async () => {
    expect((await refusal(http("https://x.example/{nmae}")))?.message).toBe(
      "spec task.options.url: unknown column {nmae} (columns: id, host, name)",
    );
    const body = await refusal(http("https://x.example/", { method: "POST", body: "{missing}" }));
    expect(body?.message).toMatch(/^spec task\.options\.body: unknown column \{missing\}/);
  });

  it.each([
    ["not a url", /^spec task\.options\.url: not a URL/],
    ["{host}/x", /^spec task\.options\.url: not a URL/],
    [
      "file:///etc/passwd",
      /^spec task\.options\.url: only http and https are supported, got file:/,
    ],
    ["gopher://127.0.0.1:70/_x", /got gopher:/],
  ])("refuses %s as a URL", async (url, message) => {
    const err = await refusal(http(url));
    expect(err?.code).toBe("SPEC_INVALID");
    expect(err?.message).toMatch(message);
  });

  it.each([
    ["http://127.0.0.1:4566/x", "127.0.0.1:4566 is a loopback address"],
    ["http://2130706433:4566/", "127.0.0.1:4566 is a loopback address"],
    ["http://[::ffff:127.0.0.1]/", "127.0.0.1:80 is a loopback address"],
    ["https://169.254.169.254/latest/api/token", "169.254.169.254:443 is a cloud metadata address"],
    ["http://[fd00:ec2::254]/", "[fd00:ec2::254]:80 is a cloud metadata address"],
    ["http://10.1.2.3:{id}/", "10.1.2.3 is a private address"],
  ])("refuses the literal address of %s", async (url, reason) => {
    const err = await refusal(http(url));
    expect(err?.code).toBe("EGRESS_REFUSED");
    expect(err?.message).toBe(`spec task.options.url: egress refused: ${reason}`);
  });

  it("accepts a literal address the allow list names, on its port only", async () => {
    const egress = parseEgressAllow("127.0.0.1:4566");
    expect(await refusal(http("http://127.0.0.1:4566/{id}"), { egress })).toBeUndefined();
    expect((await refusal(http("http://127.0.0.1:4567/"), { egress }))?.code).toBe(
      "EGRESS_REFUSED",
    );
    // A port from the row may be the allowed one: the worker decides per row.
    expect(await refusal(http("http://127.0.0.1:{id}/"), { egress })).toBeUndefined();
  });

  it("leaves host names to the worker (DNS decides), even localhost", async () => {
    expect(await refusal(http("http://localhost:4566/"))).toBeUndefined();
  });
});

describe("checkSpec: transform", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "shardfleet-plugins-"));
    await writeFile(path.join(dir, "upper.mjs"), "export default () => ({})\n");
    await writeFile(path.join(dir, "legacy.js"), "export default () => ({})\n");
    await writeFile(path.join(dir, "notes.txt"), "not a plugin\n");
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  const transform = (module: string) => ({ name: "transform", options: { module } });

  it("accepts a plugin the workers have (.mjs or .js)", async () => {
    expect(await refusal(transform("upper"), { pluginDir: dir })).toBeUndefined();
    expect(await refusal(transform("legacy"), { pluginDir: dir })).toBeUndefined();
  });

  it("refuses an unknown plugin, listing the known ones", async () => {
    const err = await refusal(transform("notes"), { pluginDir: dir });
    expect(err?.code).toBe("SPEC_INVALID");
    expect(err?.message).toBe(
      'spec task.options.module: unknown plugin "notes" (the workers have: legacy, upper)',
    );
    const none = await refusal(transform("upper"), { pluginDir: path.join(dir, "missing") });
    expect(none?.message).toMatch(/the workers have: none/);
  });
});
