import { describe, expect, it } from "vitest";
import { silentLogger } from "../shared/logger.ts";
import { Heartbeat, type VisibilityPort } from "./heartbeat.ts";

/** Resolves once `check()` holds, polling every 5 ms (no fixed sleeps: robust under load). */
async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((r) => setTimeout(r, 5));
}

describe("Heartbeat", () => {
  it("extends tracked messages until they are untracked", async () => {
    const calls: Array<[string, string, number]> = [];
    const queue: VisibilityPort = {
      changeVisibility: async (url, handle, seconds) => {
        calls.push([url, handle, seconds]);
      },
    };
    const count = (handle: string) => calls.filter(([, h]) => h === handle).length;
    const heartbeat = new Heartbeat(
      { queue, logger: silentLogger() },
      { visibilityTimeoutSeconds: 45, intervalMs: 10 },
    );
    try {
      heartbeat.track("m1", "q", "h1");
      heartbeat.track("m2", "q", "h2");
      await until(() => count("h1") > 0 && count("h2") > 0);
      expect(calls).toContainEqual(["q", "h1", 45]);
      heartbeat.untrack("m1");
      const h1 = count("h1");
      const h2 = count("h2");
      // Two more beats for m2; m1 has had none since it was untracked.
      await until(() => count("h2") >= h2 + 2);
      expect(count("h1")).toBe(h1);
    } finally {
      heartbeat.close();
    }
  });
});
