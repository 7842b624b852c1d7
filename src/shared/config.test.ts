import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  DEFAULT_API_LIMITS,
  DEFAULT_AWS_TIMEOUTS,
  DEFAULT_WORKBOOK_LIMITS,
  loadConfig,
  parseApiTokens,
  requireQueue,
} from "./config.ts";
import { checkEgress } from "./egress.ts";
import { ConfigError } from "./errors.ts";

describe("loadConfig", () => {
  it("applies defaults and freezes the result", () => {
    const config = loadConfig({});
    expect(config.bucket).toBe("shardfleet-local");
    expect(config.api.port).toBe(8080);
    expect(config.worker.market).toBe("on-demand");
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.worker)).toBe(true);
  });

  it("parses typed values", () => {
    const config = loadConfig({
      SHARDFLEET_API_PORT: "9000",
      SHARDFLEET_LOG_PRETTY: "true",
      SHARDFLEET_MARKET: "spot",
      SHARDFLEET_MAX_UPLOAD_MB: "2",
      SHARDFLEET_WORK_QUEUE_URL: "http://127.0.0.1:4566/000000000000/work",
    });
    expect(config.api.port).toBe(9000);
    expect(config.log.pretty).toBe(true);
    expect(config.worker.market).toBe("spot");
    expect(config.api.maxUploadBytes).toBe(2 * 1024 * 1024);
    expect(requireQueue(config, "work")).toContain("/work");
  });

  it("reads the workbook limits (MiB to bytes) with Excel's row limit as the default and cap", () => {
    expect(loadConfig({}).workbook).toEqual({
      maxSheetBytes: 1024 * 1024 * 1024,
      maxPartBytes: 256 * 1024 * 1024,
      maxCompressionRatio: 200,
      maxEntries: 10_000,
      maxRows: 1_048_575,
    });
    const config = loadConfig({
      SHARDFLEET_MAX_INFLATED_MB: "64",
      SHARDFLEET_MAX_SHARED_STRINGS_MB: "8",
      SHARDFLEET_MAX_COMPRESSION_RATIO: "50",
      SHARDFLEET_MAX_ZIP_ENTRIES: "100",
      SHARDFLEET_MAX_ROWS: "1000",
    });
    expect(config.workbook).toEqual({
      maxSheetBytes: 64 * 1024 * 1024,
      maxPartBytes: 8 * 1024 * 1024,
      maxCompressionRatio: 50,
      maxEntries: 100,
      maxRows: 1000,
    });
    expect(() => loadConfig({ SHARDFLEET_MAX_ROWS: "2000000" })).toThrow(/SHARDFLEET_MAX_ROWS/);
  });

  it("defaults to the one definition of each limit that callers use too", () => {
    const config = loadConfig({});
    expect(config.workbook).toEqual(DEFAULT_WORKBOOK_LIMITS);
    expect(config.api.limits).toEqual(DEFAULT_API_LIMITS);
    expect(DEFAULT_API_LIMITS.headersTimeoutMs).toBe(20_000);
  });

  it("rejects an unknown SHARDFLEET_ setting by name", () => {
    expect(() => loadConfig({ SHARDFLEET_BUCKT: "x" })).toThrow(/unknown setting SHARDFLEET_BUCKT/);
  });

  it("rejects an invalid value naming the setting", () => {
    const err = (() => {
      try {
        loadConfig({ SHARDFLEET_API_PORT: "eighty" });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toMatch(/SHARDFLEET_API_PORT="eighty"/);
    expect((err as ConfigError).details.setting).toBe("SHARDFLEET_API_PORT");
  });

  it("reads the launch concurrency of the fleet manager (default 5, 1–50), naming the setting when bad", () => {
    expect(loadConfig({}).fleet.launchConcurrency).toBe(5);
    expect(loadConfig({ SHARDFLEET_LAUNCH_CONCURRENCY: "12" }).fleet.launchConcurrency).toBe(12);
    for (const bad of ["0", "51", "two"]) {
      expect(() => loadConfig({ SHARDFLEET_LAUNCH_CONCURRENCY: bad })).toThrow(
        /SHARDFLEET_LAUNCH_CONCURRENCY/,
      );
    }
  });

  it("reads the scheduler lease duration (default 30 s, 1–3600), naming the setting when bad", () => {
    expect(loadConfig({}).lease.seconds).toBe(30);
    expect(loadConfig({ SHARDFLEET_LEASE_S: "7.5" }).lease.seconds).toBe(7.5);
    for (const bad of ["0", "3601", "soon"]) {
      expect(() => loadConfig({ SHARDFLEET_LEASE_S: bad })).toThrow(/SHARDFLEET_LEASE_S/);
    }
  });

  it("reads the AWS SDK timeouts; the idle one must outlast SQS's longest long poll", () => {
    expect(loadConfig({}).aws).toEqual(DEFAULT_AWS_TIMEOUTS);
    expect(
      loadConfig({ SHARDFLEET_AWS_CONNECT_TIMEOUT_S: "2.5", SHARDFLEET_AWS_IDLE_TIMEOUT_S: "90" })
        .aws,
    ).toEqual({ connectMs: 2500, idleMs: 90_000 });
    expect(() => loadConfig({ SHARDFLEET_AWS_IDLE_TIMEOUT_S: "20" })).toThrow(
      /SHARDFLEET_AWS_IDLE_TIMEOUT_S.*long-poll/,
    );
    for (const bad of ["0", "soon"]) {
      expect(() => loadConfig({ SHARDFLEET_AWS_CONNECT_TIMEOUT_S: bad })).toThrow(
        /SHARDFLEET_AWS_CONNECT_TIMEOUT_S/,
      );
    }
  });

  it("names the missing queue setting", () => {
    expect(() => requireQueue(loadConfig({}), "dlq")).toThrow(/SHARDFLEET_DLQ_URL/);
  });

  it("reads the spot events queue (optional, a URL)", () => {
    expect(loadConfig({}).queues.spotEvents).toBeUndefined();
    const url = "http://127.0.0.1:4566/000000000000/shardfleet-spot-events";
    const config = loadConfig({ SHARDFLEET_SPOT_EVENTS_QUEUE_URL: url });
    expect(config.queues.spotEvents).toBe(url);
    expect(requireQueue(config, "spotEvents")).toBe(url);
    expect(() => loadConfig({ SHARDFLEET_SPOT_EVENTS_QUEUE_URL: "not a url" })).toThrow(
      /SHARDFLEET_SPOT_EVENTS_QUEUE_URL/,
    );
    expect(() => requireQueue(loadConfig({}), "spotEvents")).toThrow(
      /SHARDFLEET_SPOT_EVENTS_QUEUE_URL/,
    );
  });

  it("reads the egress allow list (public-only when unset), naming the setting when bad", () => {
    expect(loadConfig({}).egress.allow).toEqual([]);
    const config = loadConfig({ SHARDFLEET_EGRESS_ALLOW: "127.0.0.1:8080, registry.local" });
    expect(config.egress.allow).toEqual([
      { kind: "address", address: "127.0.0.1", port: 8080 },
      { kind: "host", host: "registry.local" },
    ]);
    // The frozen policy still decides (ranges included).
    const ranges = loadConfig({ SHARDFLEET_EGRESS_ALLOW: "10.0.0.0/8,[fd00::/8]:443" }).egress;
    expect(checkEgress(ranges, { address: "10.1.2.3", port: 80 }).ok).toBe(true);
    expect(checkEgress(ranges, { address: "fd00::5", port: 443 }).ok).toBe(true);
    expect(checkEgress(ranges, { address: "fd00::5", port: 80 }).ok).toBe(false);
    expect(() => loadConfig({ SHARDFLEET_EGRESS_ALLOW: "127.0.0.1:99999" })).toThrow(
      /invalid setting SHARDFLEET_EGRESS_ALLOW: "127.0.0.1:99999": port must be 1-65535/,
    );
  });

  it("reads notifications: off by default; defaults, secret and transport checked together", () => {
    expect(loadConfig({}).notify).toEqual({
      defaults: { email: [] },
      email: { kind: "none" },
      intervalSeconds: 2,
    });
    const config = loadConfig({
      SHARDFLEET_NOTIFY_SECRET: "0123456789abcdef",
      SHARDFLEET_NOTIFY_WEBHOOK: "https://hooks.example.com/ops",
      SHARDFLEET_NOTIFY_EMAIL: "ops@example.com, finance@example.com",
      SHARDFLEET_NOTIFY_ON: "failed,succeeded-with-failures",
      SHARDFLEET_EMAIL_TRANSPORT: "smtp",
      SHARDFLEET_SMTP_URL: "smtp://127.0.0.1:2525",
      SHARDFLEET_EMAIL_FROM: "shardfleet@example.com",
      SHARDFLEET_PUBLIC_URL: "https://shardfleet.example.com",
    }).notify;
    expect(config).toEqual({
      secret: "0123456789abcdef",
      defaults: {
        webhook: "https://hooks.example.com/ops",
        email: ["ops@example.com", "finance@example.com"],
        on: ["failed", "succeeded-with-failures"],
      },
      email: { kind: "smtp", url: "smtp://127.0.0.1:2525", from: "shardfleet@example.com" },
      publicUrl: "https://shardfleet.example.com",
      intervalSeconds: 2,
    });
    expect(() => loadConfig({ SHARDFLEET_NOTIFY_WEBHOOK: "https://hooks.example.com/x" })).toThrow(
      /invalid setting SHARDFLEET_NOTIFY_SECRET: SHARDFLEET_NOTIFY_WEBHOOK needs it/,
    );
    expect(() => loadConfig({ SHARDFLEET_NOTIFY_EMAIL: "ops@example.com" })).toThrow(
      /SHARDFLEET_EMAIL_TRANSPORT: SHARDFLEET_NOTIFY_EMAIL needs smtp or ses/,
    );
    expect(() => loadConfig({ SHARDFLEET_NOTIFY_ON: "done" })).toThrow(
      /SHARDFLEET_NOTIFY_ON: unknown event "done"/,
    );
    expect(() => loadConfig({ SHARDFLEET_EMAIL_TRANSPORT: "ses" })).toThrow(
      /SHARDFLEET_EMAIL_FROM: an email transport needs a From address/,
    );
    expect(() => loadConfig({ SHARDFLEET_NOTIFY_SECRET: "short" })).toThrow(
      /SHARDFLEET_NOTIFY_SECRET/,
    );
  });

  it("ignores variables of other programs", () => {
    expect(() => loadConfig({ PATH: "/bin", AWS_REGION: "eu-west-1" })).not.toThrow();
  });
});

describe("API tokens", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "shardfleet-config-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const A = "a".repeat(64);
  const B = "0123456789abcdef0123456789abcdef+/_-.~==";
  const SHORT = "s".repeat(31);

  function tokensFile(text: string): string {
    const file = path.join(dir, `tokens-${Math.random().toString(36).slice(2)}`);
    writeFileSync(file, text);
    return file;
  }

  function refusal(env: Record<string, string>): ConfigError {
    try {
      loadConfig(env);
    } catch (err) {
      if (err instanceof ConfigError) return err;
      throw err;
    }
    throw new Error("loadConfig accepted it");
  }

  it("none by default: the API is unauthenticated", () => {
    expect(loadConfig({}).api.auth).toEqual({ source: "none" });
  });

  it("reads one token a line from the file, skipping blank lines and # comments (CRLF too)", () => {
    const file = tokensFile(`# current\r\n${A}\r\n\n  # next, during a rotation\n  ${B}  \n\n`);
    expect(loadConfig({ SHARDFLEET_API_TOKENS_FILE: file }).api.auth).toEqual({
      source: "file",
      tokens: [A, B],
    });
  });

  it("refuses a token under 32 characters, naming the setting and line, not the token", () => {
    const err = refusal({ SHARDFLEET_API_TOKENS_FILE: tokensFile(`${A}\n${SHORT}\n`) });
    expect(err.message).toMatch(
      /^SHARDFLEET_API_TOKENS_FILE: the token on line 2 has 31 characters/,
    );
    expect(err.message).not.toContain(SHORT);
    expect(err.message).not.toContain("\n");
    expect(err.details.setting).toBe("SHARDFLEET_API_TOKENS_FILE");
    // 32 is enough.
    expect(parseApiTokens("x".repeat(32), "S")).toEqual(["x".repeat(32)]);
  });

  it("refuses a line that is no bearer token, and a file without any token", () => {
    expect(() =>
      loadConfig({ SHARDFLEET_API_TOKENS_FILE: tokensFile(`${A} # trailing comment\n`) }),
    ).toThrow(/SHARDFLEET_API_TOKENS_FILE: the token on line 1 is not a bearer token/);
    expect(() =>
      loadConfig({ SHARDFLEET_API_TOKENS_FILE: tokensFile("# nothing yet\n\n") }),
    ).toThrow(/SHARDFLEET_API_TOKENS_FILE: no token found/);
  });

  it("names the setting when the file cannot be read", () => {
    const err = refusal({ SHARDFLEET_API_TOKENS_FILE: path.join(dir, "missing") });
    expect(err.message).toMatch(/cannot read SHARDFLEET_API_TOKENS_FILE=".*missing": ENOENT/);
    expect(err.details.setting).toBe("SHARDFLEET_API_TOKENS_FILE");
  });

  it("takes an SSM parameter name (read by the scheduler at start), or an ARN", () => {
    expect(
      loadConfig({ SHARDFLEET_API_TOKEN_SSM_PARAMETER: "/shardfleet/prod/api-token" }).api.auth,
    ).toEqual({ source: "ssm", parameter: "/shardfleet/prod/api-token" });
    const arn = "arn:aws:ssm:us-east-1:123456789012:parameter/shardfleet-api-token";
    expect(loadConfig({ SHARDFLEET_API_TOKEN_SSM_PARAMETER: arn }).api.auth).toEqual({
      source: "ssm",
      parameter: arn,
    });
    expect(() => loadConfig({ SHARDFLEET_API_TOKEN_SSM_PARAMETER: "my token" })).toThrow(
      /invalid setting SHARDFLEET_API_TOKEN_SSM_PARAMETER="my token"/,
    );
  });

  it("refuses both sources at once", () => {
    const err = refusal({
      SHARDFLEET_API_TOKENS_FILE: tokensFile(A),
      SHARDFLEET_API_TOKEN_SSM_PARAMETER: "/shardfleet/api-token",
    });
    expect(err.message).toMatch(
      /SHARDFLEET_API_TOKENS_FILE and SHARDFLEET_API_TOKEN_SSM_PARAMETER exclude each other/,
    );
  });

  it("leaves SHARDFLEET_API_TOKEN to the CLI (a client setting, not the scheduler's)", () => {
    expect(loadConfig({ SHARDFLEET_API_TOKEN: A }).api.auth).toEqual({ source: "none" });
  });
});
