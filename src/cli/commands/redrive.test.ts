import { describe, expect, it } from "vitest";
import { CliError, EXIT } from "../cli-error.ts";
import { retryRequestOf } from "./redrive.ts";

describe("retryRequestOf (shardfleet retry --set key=value)", () => {
  it("JSON values are values, anything else text; null restores a default; no --set: no change", () => {
    expect(
      retryRequestOf(["retries=6", "adaptiveConcurrency=false", "url=http://x/{id}", "body=null"]),
    ).toEqual({
      options: { retries: 6, adaptiveConcurrency: false, url: "http://x/{id}", body: null },
    });
    expect(retryRequestOf(['headers={"x-a":"1"}', "a=b=c"])).toEqual({
      options: { headers: { "x-a": "1" }, a: "b=c" },
    });
    expect(retryRequestOf([])).toEqual({});
  });

  it("a pair without a key is a usage error naming it", () => {
    for (const bad of ["retries", "=6", " =1"]) {
      let caught: unknown;
      try {
        retryRequestOf([bad]);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(CliError);
      expect((caught as CliError).message).toContain(JSON.stringify(bad));
      expect((caught as CliError).exitCode).toBe(EXIT.usage);
    }
  });
});
