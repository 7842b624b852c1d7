import { describe, expect, it } from "vitest";
import { createS3Client, unsignedPayloadAllowed } from "./aws.ts";

describe("unsignedPayloadAllowed", () => {
  it("lets bodies go unsigned to AWS (no endpoint), over https and on loopback", () => {
    expect(unsignedPayloadAllowed(undefined)).toBe(true);
    expect(unsignedPayloadAllowed("https://minio.internal:9000")).toBe(true);
    expect(unsignedPayloadAllowed("http://127.0.0.1:4566")).toBe(true);
    expect(unsignedPayloadAllowed("http://127.8.0.2:9000")).toBe(true);
    expect(unsignedPayloadAllowed("http://localhost:4566")).toBe(true);
    expect(unsignedPayloadAllowed("http://[::1]:4566")).toBe(true);
  });

  it("keeps payload signing for plain http across a network, or an endpoint it cannot read", () => {
    expect(unsignedPayloadAllowed("http://minio.internal:9000")).toBe(false);
    expect(unsignedPayloadAllowed("http://10.0.3.7:9000")).toBe(false);
    expect(unsignedPayloadAllowed("http://[fd00::7]:9000")).toBe(false);
    expect(unsignedPayloadAllowed("http://localhost.example.com:9000")).toBe(false);
    expect(unsignedPayloadAllowed("minio:9000")).toBe(false);
  });
});

describe("createS3Client", () => {
  const credentials = { accessKeyId: "test", secretAccessKey: "test" };
  const unsigned = (endpoint: string) =>
    createS3Client({ endpoint, credentials, env: {} })
      .middlewareStack.identify()
      .some((m) => m.startsWith("shardfleetUnsignedPayload"));

  it("adds the unsigned-payload step only where the decision allows it", () => {
    expect(unsigned("http://127.0.0.1:4566")).toBe(true);
    expect(unsigned("https://s3.example.com")).toBe(true);
    expect(unsigned("http://minio.internal:9000")).toBe(false);
  });
});
