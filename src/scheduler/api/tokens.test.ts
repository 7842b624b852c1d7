/**
 * Where the API's tokens come from at start. SSM has no local peer here, so a real SSMClient
 * talks to a stub HTTP handler that answers with canned GetParameter bodies shaped like the
 * SSM API reference's (and its error bodies), recording each request. Nothing talks to AWS.
 */
import { Readable } from "node:stream";
import { SSMClient } from "@aws-sdk/client-ssm";
import { describe, expect, it } from "vitest";
import { capturingLogger } from "../../../test/support/api.ts";
import { ConfigError } from "../../shared/errors.ts";
import { sha256Hex } from "../../shared/schemas/tokens.ts";
import { loadApiTokens } from "./tokens.ts";

const NAME = "/shardfleet/prod/api-tokens";
const ARN = `arn:aws:ssm:us-east-1:123456789012:parameter${NAME}`;
const A = "a1".repeat(32);
const B = "b2".repeat(32);

interface Seen {
  target: string | undefined;
  body: unknown;
}

/** A real SSMClient whose HTTP handler answers `status` with `body` (JSON), once a call. */
function stubSsm(status: number, body: unknown): { ssm: SSMClient; seen: Seen[] } {
  const seen: Seen[] = [];
  const requestHandler = {
    async handle(req: { headers: Record<string, string>; body: Uint8Array }) {
      const text = new TextDecoder().decode(req.body);
      seen.push({ target: req.headers["x-amz-target"], body: JSON.parse(text) });
      return {
        response: {
          statusCode: status,
          headers: { "content-type": "application/x-amz-json-1.1" },
          body: Readable.from([Buffer.from(JSON.stringify(body))]),
        },
      };
    },
  };
  const ssm = new SSMClient({
    region: "us-east-1",
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
    requestHandler,
    maxAttempts: 1,
  });
  return { ssm, seen };
}

const parameter = (value: string, type = "SecureString") => ({
  Parameter: {
    ARN,
    DataType: "text",
    LastModifiedDate: 1_767_225_600,
    Name: NAME,
    Type: type,
    Value: value,
    Version: 3,
  },
});

async function refusal(status: number, body: unknown): Promise<ConfigError> {
  const { ssm } = stubSsm(status, body);
  const { logger } = capturingLogger();
  try {
    await loadApiTokens({ source: "ssm", parameter: NAME }, { logger, ssm });
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  } finally {
    ssm.destroy();
  }
  throw new Error("the tokens were accepted");
}

describe("loadApiTokens from an SSM SecureString (mocked SSM: no local peer)", () => {
  it("reads the parameter once, decrypted, with the tokens one a line", async () => {
    const { ssm, seen } = stubSsm(200, parameter(`# rotation\n${A}\n\n${B}\n`));
    const { logger, lines } = capturingLogger();
    try {
      const tokens = await loadApiTokens({ source: "ssm", parameter: NAME }, { logger, ssm });
      expect(tokens).toEqual([A, B]);
    } finally {
      ssm.destroy();
    }
    expect(seen).toEqual([
      { target: "AmazonSSM.GetParameter", body: { Name: NAME, WithDecryption: true } },
    ]);
    expect(lines).toEqual([
      expect.objectContaining({
        msg: "the API requires a bearer token",
        tokens: 2,
        parameter: NAME,
      }),
    ]);
    expect(JSON.stringify(lines)).not.toContain(A);
  });

  it("stops the start on a missing parameter, naming setting and parameter", async () => {
    const err = await refusal(400, { __type: "ParameterNotFound" });
    expect(err.message).toBe(
      `cannot read SHARDFLEET_API_TOKEN_SSM_PARAMETER=${NAME} from SSM Parameter Store (ParameterNotFound)`,
    );
    expect(err.details.setting).toBe("SHARDFLEET_API_TOKEN_SSM_PARAMETER");
  });

  it("passes on SSM's own words when the role may not read it", async () => {
    const denied = `User: arn:aws:sts::123456789012:assumed-role/scheduler/i-0123 is not authorized to perform: ssm:GetParameter on resource: ${ARN} because no identity-based policy allows the ssm:GetParameter action`;
    const err = await refusal(400, { __type: "AccessDeniedException", message: denied });
    expect(err.message).toBe(
      `cannot read SHARDFLEET_API_TOKEN_SSM_PARAMETER=${NAME} from SSM Parameter Store (AccessDeniedException: ${denied})`,
    );
  });

  it("reads tenant lines (hash, role, caps) from the parameter as from the file", async () => {
    const line = `tenant=acme sha256=${sha256Hex(A)} role=admin max-instances=4`;
    const { ssm } = stubSsm(200, parameter(`${line}\n${B}\n`));
    const { logger } = capturingLogger();
    try {
      const tokens = await loadApiTokens({ source: "ssm", parameter: NAME }, { logger, ssm });
      expect(tokens).toEqual([
        { tenant: "acme", role: "admin", sha256: sha256Hex(A), line: 1, caps: { maxInstances: 4 } },
        B,
      ]);
    } finally {
      ssm.destroy();
    }
  });

  it("refuses a parameter that is not a SecureString", async () => {
    const err = await refusal(200, parameter(A, "String"));
    expect(err.message).toMatch(/is a String parameter: store the tokens as a SecureString/);
  });

  it("refuses a short token in the parameter, without saying it", async () => {
    const err = await refusal(200, parameter(`${A}\nshort-token`));
    expect(err.message).toMatch(
      /^SHARDFLEET_API_TOKEN_SSM_PARAMETER: the token on line 2 has 11 characters/,
    );
    expect(err.message).not.toContain("short-token");
  });
});

describe("loadApiTokens without SSM", () => {
  it("says once that the API is unauthenticated when no source is set", async () => {
    const { logger, lines } = capturingLogger();
    expect(await loadApiTokens({ source: "none" }, { logger })).toEqual([]);
    expect(lines).toEqual([
      expect.objectContaining({
        level: 30,
        msg: expect.stringMatching(/^the API is unauthenticated/),
      }),
    ]);
  });

  it("hands on the tokens loadConfig read from the file", async () => {
    const { logger, lines } = capturingLogger();
    expect(await loadApiTokens({ source: "file", tokens: [A, B] }, { logger })).toEqual([A, B]);
    expect(lines).toEqual([expect.objectContaining({ tokens: 2 })]);
  });
});
