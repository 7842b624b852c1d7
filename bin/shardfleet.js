#!/usr/bin/env node
// The compiled CLI: `npm run build` writes dist/ (the package ships it). From a checkout without
// a build, run the sources instead: node --import tsx src/cli/main.ts.

// On Node 20 the AWS SDK prints, at every start, that its releases after early January 2027
// need Node 22 (README, "Node.js versions"); that notice would only clutter every command.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

const main = new URL("../dist/cli/main.js", import.meta.url);
try {
  await import(main.href);
} catch (err) {
  if (err?.code !== "ERR_MODULE_NOT_FOUND" || !String(err.message).includes(main.pathname)) {
    throw err;
  }
  process.stderr.write(
    "shardfleet: dist/ is missing: run `npm run build` first (or node --import tsx src/cli/main.ts)\n",
  );
  process.exitCode = 1;
}
