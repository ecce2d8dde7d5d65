// What both browser tests need: the server binary on a free loopback port
// with a fresh SQLite database and an HS256 secret, a token for one user,
// and headless Chromium with a fresh profile.
//
// Environment:
//   TODO_API_BIN     server binary (default: target/debug/todo-api, relative
//                    to the repository root)
//   CHROMIUM_PATH    browser (default: /usr/bin/chromium, Debian's `chromium`)
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const binEnv = process.env.TODO_API_BIN || 'target/debug/todo-api';
const bin = isAbsolute(binEnv) ? binEnv : join(root, binEnv);
const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

/**
 * Starts the server and Chromium; `sub` is the user the token is for.
 * Returns `{ base, token, browser, log(), close() }`; call `close()` in `after`.
 */
export async function start({ sub, viewport }) {
  const work = mkdtempSync(join(tmpdir(), 'todo-api-browser-'));
  const port = await freePort();
  const env = {
    ...process.env,
    DATABASE_URL: `sqlite://${work}/todo.db?mode=rwc`,
    BETTER_AUTH_SECRET: randomBytes(36).toString('base64url'),
    HOST: '127.0.0.1',
    PORT: String(port),
    RUST_LOG: 'warn',
    RATE_LIMIT: '1000000/min',
  };
  const base = `http://127.0.0.1:${port}`;
  let serverLog = '';
  const server = spawn(bin, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  server.stdout.on('data', (d) => { serverLog += d; });
  server.stderr.on('data', (d) => { serverLog += d; });
  const running = () => server.exitCode === null && server.signalCode === null;
  const stopServer = () => { if (running()) server.kill('SIGTERM'); };
  process.on('exit', stopServer);
  await new Promise((ok, fail) => {
    server.once('spawn', ok);
    server.once('error', fail);
  });

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (server.exitCode !== null) {
      throw new Error(`server exited with ${server.exitCode}:\n${serverLog}`);
    }
    try {
      const res = await fetch(`${base}/health`);
      if (res.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`server not healthy in 30 s:\n${serverLog}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const token = execFileSync(bin, ['token', '--sub', sub, '--ttl', '1h'], { env, encoding: 'utf8' }).trim();
  assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'minted token is a JWT');

  // A persistent context is Playwright's way to give Chromium a fresh
  // --user-data-dir (passing that flag in `args` is refused).
  const browser = await chromium.launchPersistentContext(join(work, 'chromium-profile'), {
    executablePath: chromiumPath,
    headless: true,
    viewport,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });

  return {
    base,
    token,
    browser,
    log: () => serverLog,
    async close() {
      await browser.close();
      if (running()) {
        const exited = new Promise((r) => server.once('exit', r));
        stopServer();
        await exited;
      }
      rmSync(work, { recursive: true, force: true });
    },
  };
}
