#!/usr/bin/env node
// The CLI runs the TypeScript sources directly through tsx: there is no build step to forget.
import { register } from "tsx/esm/api";

// The pinned AWS SDK supports Node 20; its notice that *later* releases will need Node 22 is
// documented in the README and would only clutter every command's output.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
register();
await import("../src/cli/main.ts");
