import { describe, expect, it } from "vitest";
import { loadConfig, requireQueue } from "./config.ts";
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

  it("ignores variables of other programs", () => {
    expect(() => loadConfig({ PATH: "/bin", AWS_REGION: "eu-west-1" })).not.toThrow();
  });
});
