import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts", "pulumi/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two cores: end-to-end suites start child processes, so keep file parallelism modest.
    maxWorkers: 2,
    pool: "forks",
    // The web console's bundle, which the scheduler serves (browser and console route tests).
    globalSetup: ["test/support/build-console.ts"],
    // On Node 20 the AWS SDK notes at start that its later releases need Node 22 (README).
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true" },
  },
});
