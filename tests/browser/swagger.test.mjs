// Swagger UI (/docs) driven in a real, headless Chromium: authorize with a
// minted token, create a task with "Try it out", list tasks, and check the
// rendered responses, then check through the API that the task exists.
//
//   cd tests/browser && npm ci && npm test
//
// Environment:
//   TODO_API_BIN     server binary (default: target/debug/todo-api, relative
//                    to the repository root)
//   CHROMIUM_PATH    browser (default: /usr/bin/chromium, Debian's `chromium`)
//
// Leaves a full-page screenshot in target/swagger-ui.png, also on failure,
// and one of each operation tried in target/swagger-ui-<operationId>.png.
// The browser may only reach the server on 127.0.0.1: any other request is blocked and fails the
// test, which shows that Swagger UI is served whole, with no CDN.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { root, start } from './harness.mjs';

const screenshotPath = join(root, 'target', 'swagger-ui.png');
const sub = 'swagger-ui-user';
const title = `Swagger UI check ${randomBytes(4).toString('hex')}`;

let harness;
let base;
let token;
let browser;

before(async () => {
  harness = await start({ sub, viewport: { width: 1280, height: 900 } });
  ({ base, token, browser } = harness);
});

after(async () => {
  if (harness) await harness.close();
});

/** Runs "Try it out" → Execute on an expanded operation; returns the live response. */
async function execute(op) {
  await op.locator('.execute-wrapper .execute').click();
  const live = op.locator('.responses-wrapper .live-responses-table');
  const status = live.locator('tbody .response .response-col_status');
  await status.first().waitFor({ timeout: 15_000 });
  const details = live.locator('tbody .response .response-col_description').first();
  const body = details.locator('div:has(> h5:text-is("Response body")) .highlight-code pre');
  const headers = details.locator('div:has(> h5:text-is("Response headers")) pre');
  return {
    status: (await status.first().innerText()).trim(),
    body: (await body.innerText()).trim(),
    headers: (await headers.innerText()).trim(),
  };
}

async function expandAndTryOut(page, operationId, tag = 'Tasks') {
  const op = page.locator(`#operations-${tag}-${operationId}`);
  await op.waitFor();
  if (!(await op.locator('.opblock-body').count())) {
    await op.locator('.opblock-summary').first().click();
  }
  await op.locator('.try-out__btn').click();
  await op.locator('.execute-wrapper .execute').waitFor();
  return op;
}

test('Swagger UI: authorize, create a task and list it', async () => {
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
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));

  try {
    await page.goto(`${base}/docs`, { waitUntil: 'load' });
    await page.locator('#operations-Tasks-createTask').waitFor({ timeout: 20_000 });

    // Authorize with the bearer token.
    await page.locator('.auth-wrapper .authorize').click();
    const modal = page.locator('.modal-ux');
    await modal.waitFor();
    await modal.locator('input#auth-bearer-value').fill(token);
    await modal.locator('.auth-btn-wrapper button[type=submit]').click();
    await modal.getByRole('heading', { name: 'Authorized' }).waitFor();
    await modal.locator('.auth-btn-wrapper .btn-done').click();
    await modal.waitFor({ state: 'detached' });
    await page.locator('.auth-wrapper .authorize.locked').waitFor();

    // createTask: POST /api/{user_id}/tasks
    const create = await expandAndTryOut(page, 'createTask');
    await create.locator('tr[data-param-name="user_id"][data-param-in="path"] input').fill(sub);
    await create.locator('textarea.body-param__text').fill(JSON.stringify({ title, tags: ['Browser'] }, null, 2));
    const created = await execute(create);
    await create.screenshot({ path: join(root, 'target', 'swagger-ui-createTask.png') });
    assert.equal(created.status, '201', `createTask answered ${created.status}: ${created.body}`);
    assert.ok(created.body.includes(title), `title not in rendered body: ${created.body}`);
    const task = JSON.parse(created.body);
    assert.equal(task.title, title);
    assert.equal(task.user_id, sub);
    assert.deepEqual(task.tags, ['browser']);
    assert.ok(Number.isInteger(task.id) && task.id > 0, `task id ${task.id}`);
    assert.match(created.headers, new RegExp(`location: /api/${sub}/tasks/${task.id}\\b`, 'i'));

    // listTasks: GET /api/{user_id}/tasks
    const list = await expandAndTryOut(page, 'listTasks');
    await list.locator('tr[data-param-name="user_id"][data-param-in="path"] input').fill(sub);
    const listed = await execute(list);
    await list.screenshot({ path: join(root, 'target', 'swagger-ui-listTasks.png') });
    const listUrl = (await list.locator('.request-url pre').innerText()).trim();
    assert.equal(listed.status, '200', `listTasks answered ${listed.status} to ${listUrl}: ${listed.body}`);
    assert.ok(listed.body.includes(title), `title not in the rendered list from ${listUrl}: ${listed.body}`);
    const listedPage = JSON.parse(listed.body);
    assert.ok(listedPage.items.some((t) => t.id === task.id && t.title === title));

    assert.deepEqual(offLoopback, [], 'the page tried to reach the network beyond 127.0.0.1');
    assert.deepEqual(pageErrors, [], 'uncaught errors in the page');

    // The task really exists, seen through the API itself.
    const auth = { Authorization: `Bearer ${token}` };
    const one = await fetch(`${base}/api/${sub}/tasks/${task.id}`, { headers: auth });
    assert.equal(one.status, 200);
    assert.equal((await one.json()).title, title);
    const all = await (await fetch(`${base}/api/${sub}/tasks?limit=100`, { headers: auth })).json();
    assert.equal(all.total, 1);
    assert.equal(all.items[0].id, task.id);
  } finally {
    // Taken whether the test passed or not: it shows what a person would see.
    mkdirSync(dirname(screenshotPath), { recursive: true });
    await page.screenshot({ path: screenshotPath, fullPage: true });
    await page.close();
  }
});
