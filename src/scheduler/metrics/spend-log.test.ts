/** The spend line the AWS stack's log metric filter reads: its message and number. */
import { describe, expect, it } from "vitest";
import { capturingLogger } from "../../../test/support/api.ts";
import { SPEND_LOG_MESSAGE, SpendLog } from "./spend-log.ts";

describe("spend log", () => {
  it("logs {hourlyUsd} under the filter's message every interval until stopped", async () => {
    const { logger, lines } = capturingLogger();
    let calls = 0;
    let second: () => void = () => {};
    const secondPass = new Promise<void>((r) => {
      second = r;
    });
    const log = new SpendLog({
      spend: {
        async hourlyUsd() {
          calls++;
          if (calls === 2) second();
          return 0.1234567891;
        },
      },
      logger,
      clock: { now: () => 0, sleep: async () => {} },
    });
    log.start();
    await secondPass;
    await log.stop();
    const spend = lines.filter((l) => l.msg === SPEND_LOG_MESSAGE);
    expect(spend.length).toBeGreaterThanOrEqual(1);
    expect(spend[0]).toMatchObject({ hourlyUsd: 0.123457, msg: "fleet spend" });
  });
});
