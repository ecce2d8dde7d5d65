// Generates src/schema.ts from ../openapi.json with openapi-typescript.
//
//   npm run generate       write src/schema.ts
//   npm run check:drift    generate into a temp file and fail if it differs
//                          from the committed src/schema.ts
//
// Both modes run the same openapi-typescript CLI with the same arguments, so
// the check can only pass when `npm run generate` would change nothing.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const spec = resolve(packageDir, "../openapi.json");
const schemaFile = resolve(packageDir, "src/schema.ts");

/** openapi-typescript options; keep every generation setting here. */
const generatorArgs: string[] = [];

function openapiTypescriptCli(): string {
  const require = createRequire(import.meta.url);
  const pkgJson = require.resolve("openapi-typescript/package.json");
  const bin = (JSON.parse(readFileSync(pkgJson, "utf8")) as { bin: Record<string, string> }).bin;
  return join(dirname(pkgJson), bin["openapi-typescript"]!);
}

function generate(output: string): void {
  const result = spawnSync(process.execPath, [openapiTypescriptCli(), spec, "--output", output, ...generatorArgs], {
    cwd: packageDir,
    encoding: "utf8",
  });
  if (result.status !== 0) {
    throw new Error(
      `openapi-typescript could not generate types from ${spec} (exit ${result.status ?? result.signal}):\n` +
        `${result.stdout ?? ""}${result.stderr ?? ""}${result.error ? String(result.error) : ""}`.trim(),
    );
  }
}

/** A short line diff (changed lines only, with line numbers), enough to see what changed. */
function describeDifference(committed: string, fresh: string, maxLines = 40): string {
  const a = committed.split("\n");
  const b = fresh.split("\n");
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  const n = endA - start;
  const m = endB - start;
  const out: string[] = [];
  if (n * m > 25_000_000) {
    out.push(`lines ${start + 1}..${endA} of the committed file differ from lines ${start + 1}..${endB} of the fresh one`);
  } else {
    // LCS table over the differing middle, then walk it to list removed (-) and added (+) lines.
    const lcs = new Uint32Array((n + 1) * (m + 1));
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        lcs[i * (m + 1) + j] =
          a[start + i] === b[start + j]
            ? lcs[(i + 1) * (m + 1) + j + 1]! + 1
            : Math.max(lcs[(i + 1) * (m + 1) + j]!, lcs[i * (m + 1) + j + 1]!);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && a[start + i] === b[start + j]) {
        i++;
        j++;
      } else if (i < n && (j === m || lcs[(i + 1) * (m + 1) + j]! >= lcs[i * (m + 1) + j + 1]!)) {
        out.push(`- ${String(start + i + 1).padStart(5)} | ${a[start + i]}`);
        i++;
      } else {
        out.push(`+ ${String(start + j + 1).padStart(5)} | ${b[start + j]}`);
        j++;
      }
    }
  }
  const shown = out.slice(0, maxLines);
  if (out.length > maxLines) shown.push(`... and ${out.length - maxLines} more changed lines`);
  return ["(- committed src/schema.ts, + generated from the spec)", ...shown].join("\n");
}

function checkDrift(): number {
  const dir = mkdtempSync(join(tmpdir(), "todo-api-client-"));
  try {
    const fresh = join(dir, "schema.ts");
    generate(fresh);
    const freshText = readFileSync(fresh, "utf8");
    let committed: string;
    try {
      committed = readFileSync(schemaFile, "utf8");
    } catch {
      console.error(`${relative(process.cwd(), schemaFile)} is missing. Run \`npm run generate\` and commit it.`);
      return 1;
    }
    if (committed === freshText) {
      console.log(`${relative(process.cwd(), schemaFile)} is up to date with ${relative(process.cwd(), spec)}.`);
      return 0;
    }
    console.error(
      [
        `${relative(process.cwd(), schemaFile)} is out of date: it differs from what ` +
          `${relative(process.cwd(), spec)} generates.`,
        describeDifference(committed, freshText),
        "",
        "Run `npm run generate` in openapi/typescript and commit src/schema.ts.",
      ].join("\n"),
    );
    return 1;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const args = process.argv.slice(2);
try {
  if (args.length === 1 && args[0] === "--check") {
    process.exitCode = checkDrift();
  } else if (args.length === 0) {
    generate(schemaFile);
    console.log(`wrote ${relative(process.cwd(), schemaFile)} from ${relative(process.cwd(), spec)}`);
  } else {
    console.error("usage: tsx scripts/generate.ts [--check]");
    process.exitCode = 2;
  }
} catch (error) {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
}
