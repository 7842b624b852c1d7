import { getMaxListeners } from "node:events";
import { describe, expect, it } from "vitest";
import { sharedAbortController } from "./async.ts";

describe("sharedAbortController", () => {
  it("lets many SDK calls in flight listen to one signal without a leak warning", () => {
    expect(getMaxListeners(sharedAbortController().signal)).toBe(200);
    expect(getMaxListeners(sharedAbortController(50).signal)).toBe(50);
  });
});
