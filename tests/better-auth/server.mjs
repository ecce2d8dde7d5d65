// A real Better Auth server for todo-api's end-to-end JWT test.
//
// Env:
//   PORT                required; the caller picks a free loopback port
//   JWT_ALG             optional: EdDSA (Better Auth's default), ES256, RS256, PS256
//   BETTER_AUTH_DB      optional: SQLite file; default is a fresh file per run in the OS temp dir
//   BETTER_AUTH_SECRET  optional: >= 32 chars; default is a fixed test-only value
//
// Prints exactly one line to stdout once listening:
//   {"ready":true,"url":"http://127.0.0.1:PORT"}
// Better Auth's own logging goes to stderr. Exits 0 on SIGTERM/SIGINT.

import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import Database from "better-sqlite3";
import { betterAuth } from "better-auth";
import { getMigrations } from "better-auth/db/migration";
import { toNodeHandler } from "better-auth/node";
import { bearer, jwt } from "better-auth/plugins";

const ALGS = ["EdDSA", "ES256", "RS256", "PS256"];

let removeOwnDbFile = () => {};

function fail(message) {
  console.error(`better-auth test server: ${message}`);
  removeOwnDbFile();
  process.exit(2);
}

const port = Number(process.env.PORT);
if (!Number.isInteger(port) || port <= 0 || port > 65535) fail("PORT must be set to a TCP port");

const alg = process.env.JWT_ALG || undefined;
if (alg && !ALGS.includes(alg)) fail(`JWT_ALG must be one of ${ALGS.join(", ")}`);

const secret = process.env.BETTER_AUTH_SECRET || "todo-api-e2e-test-secret-not-for-production-0123456789";
if (secret.length < 32) fail("BETTER_AUTH_SECRET must be at least 32 characters");

const dbFile = process.env.BETTER_AUTH_DB || join(tmpdir(), `todo-api-better-auth-${process.pid}-${randomUUID()}.db`);
// We only delete the database on exit if we invented its path; a caller-given file is theirs.
if (!process.env.BETTER_AUTH_DB) {
  removeOwnDbFile = () => {
    for (const suffix of ["", "-wal", "-shm", "-journal"]) rmSync(dbFile + suffix, { force: true });
  };
}

const baseURL = `http://127.0.0.1:${port}`;
const db = new Database(dbFile);

const auth = betterAuth({
  baseURL,
  secret,
  database: db,
  emailAndPassword: { enabled: true, requireEmailVerification: false },
  // Leaving keyPairConfig unset keeps Better Auth's own default (EdDSA/Ed25519),
  // which is what a real deployment gets unless it opts out.
  plugins: [jwt(alg ? { jwks: { keyPairConfig: { alg } } } : undefined), bearer()],
  // Telemetry would try to reach the network; this sandbox has none.
  telemetry: { enabled: false },
  // A test suite signs up and signs in far more often than the default limits allow
  // (they switch on when NODE_ENV=production).
  rateLimit: { enabled: false },
  // stdout carries only the ready line; the caller may parse it.
  logger: { log: (level, message, ...args) => console.error(`[better-auth ${level}] ${message}`, ...args) },
});

const { runMigrations } = await getMigrations(auth.options);
await runMigrations();

const server = createServer(toNodeHandler(auth));

server.listen(port, "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ ready: true, url: baseURL })}\n`);
});
server.on("error", (err) => fail(err.message));

let stopping = false;
function shutdown() {
  if (stopping) return;
  stopping = true;
  // Keep-alive connections from the test client would otherwise hold close() open.
  server.closeAllConnections();
  server.close(() => {
    db.close();
    removeOwnDbFile();
    process.exit(0);
  });
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
