/** The spec's `notify` field at intake: schema (strict) and deployment checks, 400s naming it. */
import { describe, expect, it } from "vitest";
import { PUBLIC_ONLY, parseEgressAllow } from "../../shared/egress.ts";
import { BadInputError } from "../../shared/errors.ts";
import { parseOperationSpec } from "../../shared/schemas/operation.ts";
import { checkSpecAlone } from "../spec-checks.ts";
import { checkNotify } from "./spec-check.ts";

const task = { name: "transform", options: { module: "uppercase" } };
const ON = { webhook: true, email: true };

function refusal(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BadInputError);
    return { code: (err as BadInputError).code, message: (err as Error).message };
  }
  throw new Error("not refused");
}

describe("spec notify", () => {
  it("parses and keeps a valid notify field", () => {
    const spec = parseOperationSpec({
      task,
      notify: {
        webhook: "https://hooks.example.com/x",
        email: ["ops@example.com"],
        on: ["succeeded", "failed"],
      },
    });
    expect(spec.notify).toEqual({
      webhook: "https://hooks.example.com/x",
      email: ["ops@example.com"],
      on: ["succeeded", "failed"],
    });
  });

  it.each([
    [{ webhok: "https://x.example" }, "spec notify.webhok: unknown field"],
    [{ webhook: "ftp://x.example/" }, "spec notify.webhook: must be an http or https URL"],
    [{ email: ["not an address"] }, "spec notify.email.0:"],
    [{ email: [] }, "spec notify.email:"],
    [{ on: ["finished"] }, "spec notify.on.0:"],
  ])("refuses %j naming the field", (notify, message) => {
    const { code, message: got } = refusal(() => parseOperationSpec({ task, notify }));
    expect(code).toBe("SPEC_INVALID");
    expect(got.startsWith(message)).toBe(true);
  });

  it("refuses a channel the deployment has off", () => {
    expect(
      refusal(() =>
        checkNotify({ webhook: "https://x.example/" }, PUBLIC_ONLY, {
          webhook: false,
          email: true,
        }),
      ).message,
    ).toMatch(/^spec notify\.webhook: webhooks are off on this deployment/);
    expect(
      refusal(() =>
        checkNotify({ email: ["a@example.com"] }, PUBLIC_ONLY, { webhook: true, email: false }),
      ).message,
    ).toMatch(/^spec notify\.email: email is off on this deployment/);
  });

  it("refuses a webhook at a literal address the egress policy refuses, as task URLs are", async () => {
    for (const url of [
      "http://169.254.169.254/latest",
      "http://127.0.0.1:9/x",
      "http://[::1]/x",
      "http://10.0.0.5/x",
    ]) {
      const spec = parseOperationSpec({ task, notify: { webhook: url } });
      await expect(checkSpecAlone(spec, { notify: ON })).rejects.toMatchObject({
        code: "EGRESS_REFUSED",
        message: expect.stringMatching(/^spec notify\.webhook: egress refused: /),
      });
    }
    // Allowed by SHARDFLEET_EGRESS_ALLOW, as for tasks.
    const spec = parseOperationSpec({ task, notify: { webhook: "http://127.0.0.1:9/x" } });
    await expect(
      checkSpecAlone(spec, { notify: ON, egress: parseEgressAllow("127.0.0.1:9") }),
    ).resolves.toBeUndefined();
  });
});
