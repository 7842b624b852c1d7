import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalImds, startLocalImds } from "../local/imds.ts";
import { readInstanceIdentity } from "./instance-identity.ts";

describe("readInstanceIdentity (real local IMDSv2)", () => {
  let imds: LocalImds;
  beforeAll(async () => {
    imds = await startLocalImds({ instanceId: "i-0abc123", market: "spot" });
  });
  afterAll(async () => {
    await imds.close();
  });

  it("reads the instance id and market with a session token", async () => {
    expect(await readInstanceIdentity(imds.endpoint)).toEqual({
      instanceId: "i-0abc123",
      market: "spot",
    });
  });

  it("gives up quietly when nothing answers (not on EC2)", async () => {
    expect(await readInstanceIdentity("http://127.0.0.1:9/", 300)).toBeUndefined();
  });

  it("gives up quietly when the service refuses (with injected IMDS failures)", async () => {
    imds.failNext(403);
    expect(await readInstanceIdentity(imds.endpoint)).toBeUndefined();
  });
});
