// Starts the real todo-api binary for the tests: a fresh SQLite database in a
// temp dir, a random HS256 secret, a free port on 127.0.0.1.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** `TODO_API_BIN` (relative to the current directory), else `../../target/debug/todo-api` from the package. */
export function serverBinary(): string {
  const fromEnv = process.env.TODO_API_BIN;
  const bin = fromEnv ? resolve(fromEnv) : resolve(packageDir, "../../target/debug/todo-api");
  try {
    accessSync(bin, constants.X_OK);
  } catch {
    throw new Error(
      `todo-api binary not found or not executable at ${bin}. ` +
        (fromEnv
          ? "Check TODO_API_BIN."
          : "Build it with `cargo build` at the repository root, or set TODO_API_BIN to a built binary."),
    );
  }
  return bin;
}

/** The server's own settings, which the caller's environment must not leak into the test server. */
const SERVER_ENV =
  /^(DATABASE_|BETTER_AUTH_|JWT_|JWKS_|CORS_|IDEMPOTENCY_|MAX_|[A-Z_]+_TIMEOUT$|REQUIRE_IF_MATCH$|TRASH_RETENTION$|CHANGES_RETENTION$|RUN_MIGRATIONS$|HOST$|PORT$|LOG_FORMAT$|RUST_LOG$)/;

function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!SERVER_ENV.test(key)) env[key] = value;
  }
  return { ...env, ...extra };
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => (port ? resolvePort(port) : reject(new Error("no port assigned"))));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface TokenClaims {
  email?: string;
  name?: string;
  ttl?: string;
}

export interface TestServer {
  /** e.g. `http://127.0.0.1:41234` */
  readonly baseUrl: string;
  /** Mints an HS256 token with `todo-api token`, signed with this server's secret. */
  token(sub: string, claims?: TokenClaims): Promise<string>;
  /** Everything the server wrote to stdout and stderr so far. */
  output(): string;
  /** SIGTERM, wait for exit (SIGKILL after 10 s), remove the temp dir. Resolves to the exit code. */
  stop(): Promise<number | null>;
}

export async function startServer({ timeoutMs = 30_000 } = {}): Promise<TestServer> {
  const bin = serverBinary();
  const dir = mkdtempSync(join(tmpdir(), "todo-api-client-test-"));
  const secret = randomBytes(32).toString("hex");
  let lastError: Error | undefined;
  // A port picked free can be taken before the server binds it: retry then.
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = await freePort();
    try {
      return await launch(bin, dir, secret, port, timeoutMs);
    } catch (error) {
      lastError = error as Error;
      if (!(error instanceof EarlyExit) || !/address|in use/i.test(error.message)) break;
    }
  }
  rmSync(dir, { recursive: true, force: true });
  throw lastError;
}

class EarlyExit extends Error {}

async function launch(bin: string, dir: string, secret: string, port: number, timeoutMs: number): Promise<TestServer> {
  const baseUrl = `http://127.0.0.1:${port}`;
  const env = cleanEnv({
    DATABASE_URL: `sqlite://${join(dir, "todo.db")}?mode=rwc`,
    BETTER_AUTH_SECRET: secret,
    HOST: "127.0.0.1",
    PORT: String(port),
    LOG_FORMAT: "json",
    RUST_LOG: "warn",
    // The headers of the rate limit on every response, without the tests
    // (one user, many requests) ever reaching it.
    RATE_LIMIT: "1000000/min",
  });
  // cwd = the temp dir, so no stray `.env` file is picked up.
  const child: ChildProcess = spawn(bin, ["serve"], { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString("utf8")).slice(-64 * 1024);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  const exited = new Promise<number | null>((r) => {
    child.once("exit", (code, signal) => r(code ?? (signal ? -1 : null)));
    child.once("error", (error) => {
      output += `\nspawn error: ${error.message}`;
      r(-1);
    });
  });
  let exitCode: number | null | undefined;
  void exited.then((code) => (exitCode = code));

  const stop = async (): Promise<number | null> => {
    if (exitCode === undefined) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
    return exitCode ?? null;
  };

  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exitCode !== undefined) {
      throw new EarlyExit(`todo-api exited (code ${exitCode}) before /health answered 200. Its output:\n${output}`);
    }
    try {
      const response = await fetch(`${baseUrl}/health`, { signal: AbortSignal.timeout(1_000) });
      if (response.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      await exited;
      throw new Error(`todo-api did not answer GET /health with 200 within ${timeoutMs} ms. Its output:\n${output}`);
    }
    await sleep(50);
  }

  const run = promisify(execFile);
  const token = async (sub: string, claims: TokenClaims = {}): Promise<string> => {
    const args = ["token", "--sub", sub, "--ttl", claims.ttl ?? "1h"];
    if (claims.email !== undefined) args.push("--email", claims.email);
    if (claims.name !== undefined) args.push("--name", claims.name);
    const { stdout, stderr } = await run(bin, args, { cwd: dir, env: cleanEnv({ BETTER_AUTH_SECRET: secret }) });
    const jwt = stdout.trim();
    if (!/^[\w-]+\.[\w-]+\.[\w-]+$/.test(jwt)) {
      throw new Error(`\`todo-api token\` did not print a JWT. stdout: ${stdout} stderr: ${stderr}`);
    }
    return jwt;
  };

  return { baseUrl, token, output: () => output, stop };
}
