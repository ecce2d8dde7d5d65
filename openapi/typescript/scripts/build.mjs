// Builds dist/ (clean) with tsc. `npm run build`, and npm's `prepare`: npm runs
// `prepare` after `npm ci` / `npm install` in this folder, before
// `npm pack`, and when another project installs this folder.
// It needs this package's dev dependencies (TypeScript), which npm does not
// install when another project installs the folder, hence the message below.
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const packageDir = join(dirname(fileURLToPath(import.meta.url)), "..");
let tsc;
try {
  tsc = join(dirname(createRequire(import.meta.url).resolve("typescript/package.json")), "bin", "tsc");
} catch {
  console.error(
    `@todo-api/client: cannot build dist/: TypeScript is not installed in ${packageDir}.\n` +
      "Run `npm ci` in that folder first (it installs the build tools and builds dist/), then install it again.",
  );
  process.exit(1);
}
rmSync(join(packageDir, "dist"), { recursive: true, force: true });
const result = spawnSync(process.execPath, [tsc, "-p", "tsconfig.build.json"], { cwd: packageDir, stdio: "inherit" });
process.exit(result.status ?? 1);
