// `npm pack` (prepack): writes npm-shrinkwrap.json from package-lock.json, without the entries
// only development needs. npm leaves the lock file out of a package but ships a shrinkwrap and
// honours it when the package is installed, so an install (the image's, `npm install -g
// --omit=dev shardfleet-x.y.z.tgz`) gets exactly the runtime versions CI tested.
import { readFileSync, writeFileSync } from "node:fs";

const lock = JSON.parse(readFileSync("package-lock.json", "utf-8"));
const packages = Object.entries(lock.packages).filter(([, entry]) => entry.dev !== true);
const [rootPath, root] = packages[0];
if (rootPath !== "") throw new Error("package-lock.json: the root package must come first");
const { devDependencies: _dev, ...runtimeRoot } = root;
writeFileSync(
  "npm-shrinkwrap.json",
  `${JSON.stringify({ ...lock, packages: Object.fromEntries([["", runtimeRoot], ...packages.slice(1)]) }, null, 2)}\n`,
);
