// Live updates in a real, headless Chromium: the TypeScript client
// (openapi/typescript/src/index.ts, bundled here with esbuild) subscribes to
// GET /api/{user_id}/events from a page, and each change made through the API
// from Node (create, toggle, delete to the trash) shows up on the page, in
// order. Each write waits for its change to show: the feed keeps a task once,
// at its latest change, so writes quicker than the stream may arrive as one.
//
//   (cd openapi/typescript && npm ci)   # the client's own dependencies
//   cd tests/browser && npm ci && npm test
//
// Environment: TODO_API_BIN and CHROMIUM_PATH, as in swagger.test.mjs.
//
// The page (/events-demo) is served by Playwright on the server's own origin,
// so the client's requests are same-origin (no CORS). Leaves a screenshot in
// target/events-demo.png, also on failure. The browser may only reach the
// server on 127.0.0.1: any other request is blocked and fails the test.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { build } from 'esbuild';
import { root, start } from './harness.mjs';

const clientDir = join(root, 'openapi', 'typescript');
const screenshotPath = join(root, 'target', 'events-demo.png');
const sub = 'events-demo-user';
const title = `Live update check ${randomBytes(4).toString('hex')}`;

let harness;
let base;
let token;
let browser;
let bundle;

/** The client as one browser script that sets the global `TodoApi`. */
async function bundleClient() {
  if (!existsSync(join(clientDir, 'node_modules', 'openapi-fetch'))) {
    throw new Error(`the client's dependencies are missing: run \`npm ci\` in ${clientDir}`);
  }
  const result = await build({
    entryPoints: [join(clientDir, 'src', 'index.ts')],
    absWorkingDir: clientDir,
    nodePaths: [join(clientDir, 'node_modules')],
    bundle: true,
    format: 'iife',
    globalName: 'TodoApi',
    platform: 'browser',
    target: 'chrome110',
    write: false,
    logLevel: 'silent',
  });
  const js = result.outputFiles[0].text;
  assert.ok(!/<\/script/i.test(js), 'the bundle can be inlined in a <script>');
  return js;
}

/** The demo page: subscribes with the client and lists each change. */
function demoPage() {
  // JSON in a <script> must not close it: escape every "<".
  const config = JSON.stringify({ baseUrl: base, token, sub }).replace(/</g, '\\u003c');
  return `<!doctype html>
<html>
<head><meta charset="utf-8"><title>todo-api live updates</title></head>
<body>
<h1>Live updates</h1>
<p>Status: <span id="status">connecting</span></p>
<ol id="changes"></ol>
<script>${bundle}</script>
<script>
  const config = ${config};
  const api = TodoApi.createTodoClient({ baseUrl: config.baseUrl, getToken: () => config.token });
  const status = document.getElementById('status');
  const list = document.getElementById('changes');
  TodoApi.subscribe(api, config.sub, {
    onOpen() { status.textContent = 'connected'; },
    onError(error) { status.textContent = 'error: ' + error; },
    onChange(change) {
      const item = document.createElement('li');
      item.dataset.op = change.op;
      item.dataset.taskId = String(change.task_id);
      if (change.task) item.dataset.completed = String(change.task.completed);
      item.textContent = change.op + ' #' + change.task_id + ' ' + (change.task ? change.task.title : '');
      list.append(item);
    },
  }).catch((error) => { status.textContent = 'failed: ' + error; });
</script>
</body>
</html>`;
}

before(async () => {
  bundle = await bundleClient();
  harness = await start({ sub, viewport: { width: 1000, height: 600 } });
  ({ base, token, browser } = harness);
});

after(async () => {
  if (harness) await harness.close();
});

/** A call to the API from Node, as the token's user; returns the parsed body. */
async function api(method, path, body) {
  const res = await fetch(`${base}/api/${sub}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body && { 'Content-Type': 'application/json' }) },
    body: body && JSON.stringify(body),
  });
  const text = await res.text();
  assert.ok(res.ok, `${method} ${path} answered ${res.status}: ${text}`);
  return text ? JSON.parse(text) : undefined;
}

test('live updates: the client in Chromium sees create, toggle and trash', async () => {
  const context = browser;
  const offLoopback = [];
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (['http:', 'https:', 'ws:', 'wss:'].includes(url.protocol) && url.hostname !== '127.0.0.1') {
      offLoopback.push(url.href);
      return route.abort('blockedbyclient');
    }
    return route.continue();
  });
  const page = context.pages()[0] ?? (await context.newPage());
  // Page routes come before the context's: this one page never reaches the server.
  await page.route(`${base}/events-demo`, (route) =>
    route.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body: demoPage() }));
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));

  try {
    await page.goto(`${base}/events-demo`, { waitUntil: 'load' });
    const status = page.locator('#status');
    await page.locator('#status:text-is("connected")').waitFor({ timeout: 10_000 })
      .catch(async (e) => { throw new Error(`page status "${await status.innerText()}": ${e.message}`); });

    const items = page.locator('#changes li');
    /** Waits until the page lists `count` changes. */
    const shown = (count) => items.nth(count - 1).waitFor({ timeout: 10_000 })
      .catch(async (e) => {
        throw new Error(`page shows ${JSON.stringify(await items.allInnerTexts())}: ${e.message}`);
      });

    const task = await api('POST', '/tasks', { title });
    await shown(1);
    await api('PATCH', `/tasks/${task.id}/complete`);
    await shown(2);
    await api('DELETE', `/tasks/${task.id}`);
    await shown(3);

    const shownChanges = await items.evaluateAll((lis) => lis.map((li) => ({ ...li.dataset, text: li.innerText })));
    const id = String(task.id);
    assert.deepEqual(shownChanges, [
      { op: 'upsert', taskId: id, completed: 'false', text: `upsert #${id} ${title}` },
      { op: 'upsert', taskId: id, completed: 'true', text: `upsert #${id} ${title}` },
      { op: 'trash', taskId: id, completed: 'true', text: `trash #${id} ${title}` },
    ], 'create, toggle and trash, in order, each with the title');
    assert.equal(await status.innerText(), 'connected');

    assert.deepEqual(offLoopback, [], 'the page tried to reach the network beyond 127.0.0.1');
    assert.deepEqual(pageErrors, [], 'uncaught errors in the page');
  } finally {
    // Taken whether the test passed or not: it shows what a person would see.
    mkdirSync(dirname(screenshotPath), { recursive: true });
    await page.screenshot({ path: screenshotPath, fullPage: true });
    await page.close();
  }
  assert.ok(statSync(screenshotPath).size > 0, `empty screenshot ${screenshotPath}`);
});
