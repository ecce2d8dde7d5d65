// Drives the whole HTTP contract (../../../shared/api-contract.md) against the
// real server binary, through the typed client only.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import {
  applyChanges,
  createTodoClient,
  CursorExpiredError,
  etagOf,
  ifMatch,
  ProblemError,
  subscribe,
  sync,
  withRetries,
  type Change,
  type ListTasksQuery,
  type NewTask,
  type Problem,
  type Task,
  type TodoClient,
} from "../src/index.js";
import { startServer, type TestServer } from "./server.js";

let server: TestServer;

before(async () => {
  server = await startServer();
});

after(async () => {
  if (!server) return;
  const code = await server.stop();
  assert.equal(code, 0, `todo-api should exit 0 on SIGTERM; its output:\n${server.output()}`);
});

let userCounter = 0;

/** A fresh user (unique `sub`) with a client that sends its token through `getToken`. */
async function newUser(label: string, claims: { email?: string; name?: string } = {}) {
  const id = `${label}-${++userCounter}-${process.pid}`;
  const token = await server.token(id, claims);
  // Async, like Better Auth's `authClient.token()`.
  const api = createTodoClient({ baseUrl: server.baseUrl, getToken: async () => token });
  return { id, token, api };
}

function assertProblem(
  result: { error?: Problem; response: Response },
  status: number,
  type = "about:blank",
): Problem {
  const { error, response } = result;
  assert.equal(response.status, status);
  assert.ok(error, `expected a ${status} problem, got a success body`);
  assert.equal(response.headers.get("content-type"), "application/problem+json");
  assert.equal(error.status, status);
  assert.equal(error.type, type);
  assert.equal(typeof error.title, "string");
  assert.ok(error.title.length > 0);
  assert.equal(typeof error.detail, "string");
  return error;
}

async function createTask(api: TodoClient, userId: string, body: NewTask): Promise<Task> {
  const { data, error, response } = await api.POST("/api/{user_id}/tasks", {
    params: { path: { user_id: userId } },
    body,
  });
  assert.equal(response.status, 201, JSON.stringify(error));
  assert.ok(data);
  return data;
}

const RFC3339_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$/;

describe("todo-api through @todo-api/client", () => {
  it("GET /health needs no token", async () => {
    const api = createTodoClient({ baseUrl: server.baseUrl });
    const { data, response } = await api.GET("/health");
    assert.equal(response.status, 200);
    assert.deepEqual(data, { status: "ok", database: "ok" });
  });

  describe("one task's life: create, get, replace, patch, toggle, delete", () => {
    it("creates with defaults, normalises input and answers 201 with Location", async () => {
      const { id: userId, api } = await newUser("life");

      const minimal = await createTask(api, userId, { title: "Just a title" });
      assert.equal(minimal.user_id, userId);
      assert.equal(minimal.title, "Just a title");
      assert.equal(minimal.description, null);
      assert.equal(minimal.priority, "medium");
      assert.equal(minimal.due_date, null);
      assert.deepEqual(minimal.tags, []);
      assert.equal(minimal.completed, false);
      assert.equal(minimal.completed_at, null);
      assert.match(minimal.created_at, RFC3339_UTC);
      assert.equal(minimal.updated_at, minimal.created_at);

      const { data, response } = await api.POST("/api/{user_id}/tasks", {
        params: { path: { user_id: userId } },
        body: {
          title: "  Write report  ",
          description: "Quarterly numbers",
          priority: "high",
          due_date: "2026-12-01T18:00:00+01:00",
          tags: ["Work", " q4 ", "work"],
        },
      });
      assert.equal(response.status, 201);
      assert.ok(data);
      assert.equal(response.headers.get("location"), `/api/${userId}/tasks/${data.id}`);
      assert.ok(Number.isInteger(data.id) && data.id > minimal.id);
      assert.equal(data.title, "Write report");
      assert.equal(data.description, "Quarterly numbers");
      assert.equal(data.priority, "high");
      assert.equal(data.due_date, "2026-12-01T17:00:00Z");
      assert.deepEqual(data.tags, ["q4", "work"]);
      assert.equal(data.completed, false);
      assert.equal(data.completed_at, null);

      const got = await api.GET("/api/{user_id}/tasks/{task_id}", {
        params: { path: { user_id: userId, task_id: data.id } },
      });
      assert.equal(got.response.status, 200);
      assert.deepEqual(got.data, data);
    });

    it("replaces with PUT: absent fields reset, completed kept when absent", async () => {
      const { id: userId, api } = await newUser("put");
      const task = await createTask(api, userId, {
        title: "Original",
        description: "old text",
        priority: "low",
        due_date: "2030-01-01T00:00:00Z",
        tags: ["a", "b"],
      });
      const path = { user_id: userId, task_id: task.id };

      const replaced = await api.PUT("/api/{user_id}/tasks/{task_id}", {
        params: { path },
        body: { title: "Replaced", tags: ["C"], completed: true },
      });
      assert.equal(replaced.response.status, 200);
      assert.ok(replaced.data);
      assert.equal(replaced.data.id, task.id);
      assert.equal(replaced.data.title, "Replaced");
      assert.equal(replaced.data.description, null);
      assert.equal(replaced.data.priority, "medium");
      assert.equal(replaced.data.due_date, null);
      assert.deepEqual(replaced.data.tags, ["c"]);
      assert.equal(replaced.data.completed, true);
      assert.match(replaced.data.completed_at ?? "", RFC3339_UTC);
      assert.equal(replaced.data.created_at, task.created_at);
      assert.ok(replaced.data.updated_at >= task.updated_at);

      const again = await api.PUT("/api/{user_id}/tasks/{task_id}", {
        params: { path },
        body: { title: "Replaced twice", priority: "high" },
      });
      assert.ok(again.data);
      assert.equal(again.data.title, "Replaced twice");
      assert.equal(again.data.priority, "high");
      assert.deepEqual(again.data.tags, []);
      assert.equal(again.data.completed, true, "completed is kept when absent from PUT");
      assert.equal(again.data.completed_at, replaced.data.completed_at);

      const missing = await api.PUT("/api/{user_id}/tasks/{task_id}", {
        params: { path: { user_id: userId, task_id: task.id + 1000 } },
        body: { title: "nobody" },
      });
      assertProblem(missing, 404);
    });

    it("patches: absent unchanged, null clears, completed sets and clears completed_at", async () => {
      const { id: userId, api } = await newUser("patch");
      const task = await createTask(api, userId, {
        title: "Patch me",
        description: "some text",
        priority: "high",
        due_date: "2031-05-06T07:08:09Z",
        tags: ["x"],
      });
      const path = { user_id: userId, task_id: task.id };

      const cleared = await api.PATCH("/api/{user_id}/tasks/{task_id}", {
        params: { path },
        body: { description: null, due_date: null },
      });
      assert.equal(cleared.response.status, 200);
      assert.deepEqual(cleared.data, {
        ...task,
        description: null,
        due_date: null,
        updated_at: cleared.data?.updated_at,
        version: task.version + 1,
      });
      assert.ok(cleared.data && cleared.data.updated_at >= task.updated_at);

      const retitled = await api.PATCH("/api/{user_id}/tasks/{task_id}", {
        params: { path },
        body: { title: " New title ", priority: "low", tags: ["Y", "x"] },
      });
      assert.ok(retitled.data);
      assert.equal(retitled.data.title, "New title");
      assert.equal(retitled.data.priority, "low");
      assert.deepEqual(retitled.data.tags, ["x", "y"]);
      assert.equal(retitled.data.description, null);
      assert.equal(retitled.data.due_date, null);

      const done = await api.PATCH("/api/{user_id}/tasks/{task_id}", { params: { path }, body: { completed: true } });
      assert.ok(done.data);
      assert.equal(done.data.completed, true);
      assert.match(done.data.completed_at ?? "", RFC3339_UTC);
      assert.equal(done.data.title, "New title");

      const reopened = await api.PATCH("/api/{user_id}/tasks/{task_id}", { params: { path }, body: { completed: false } });
      assert.ok(reopened.data);
      assert.equal(reopened.data.completed, false);
      assert.equal(reopened.data.completed_at, null);

      const empty = await api.PATCH("/api/{user_id}/tasks/{task_id}", { params: { path }, body: {} });
      assert.ok(empty.data);
      assert.equal(empty.data.title, "New title");
      assert.deepEqual(empty.data.tags, ["x", "y"]);
    });

    it("toggles completion with PATCH .../complete", async () => {
      const { id: userId, api } = await newUser("toggle");
      const task = await createTask(api, userId, { title: "Toggle me" });
      const path = { user_id: userId, task_id: task.id };

      const on = await api.PATCH("/api/{user_id}/tasks/{task_id}/complete", { params: { path } });
      assert.equal(on.response.status, 200);
      assert.ok(on.data);
      assert.equal(on.data.completed, true);
      assert.match(on.data.completed_at ?? "", RFC3339_UTC);
      assert.equal(on.data.title, "Toggle me");

      const off = await api.PATCH("/api/{user_id}/tasks/{task_id}/complete", { params: { path } });
      assert.ok(off.data);
      assert.equal(off.data.completed, false);
      assert.equal(off.data.completed_at, null);

      const missing = await api.PATCH("/api/{user_id}/tasks/{task_id}/complete", {
        params: { path: { user_id: userId, task_id: task.id + 1000 } },
      });
      assertProblem(missing, 404);
    });

    it("deletes with 204, then the task is a typed 404 problem", async () => {
      const { id: userId, api } = await newUser("delete");
      const task = await createTask(api, userId, { title: "Short-lived", tags: ["gone"] });
      const keep = await createTask(api, userId, { title: "Stays" });
      const path = { user_id: userId, task_id: task.id };

      const deleted = await api.DELETE("/api/{user_id}/tasks/{task_id}", { params: { path } });
      assert.equal(deleted.response.status, 204);
      assert.equal(deleted.error, undefined);

      const notFound = assertProblem(await api.GET("/api/{user_id}/tasks/{task_id}", { params: { path } }), 404);
      assert.equal(notFound.title, "Not Found");
      assert.equal(notFound.errors, undefined);

      assertProblem(await api.DELETE("/api/{user_id}/tasks/{task_id}", { params: { path } }), 404);

      const list = await api.GET("/api/{user_id}/tasks", { params: { path: { user_id: userId } } });
      assert.deepEqual(
        list.data?.items.map((t) => t.id),
        [keep.id],
      );
      const tags = await api.GET("/api/{user_id}/tags", { params: { path: { user_id: userId } } });
      assert.deepEqual(tags.data, [], "a tag no task carries any more is not listed");
    });
  });

  describe("concurrent edits: versions, If-Match, If-None-Match", () => {
    it("a write with the version another tab already changed is a 412 naming the current one", async () => {
      const { id: userId, api } = await newUser("versions");
      const created = await api.POST("/api/{user_id}/tasks", {
        params: { path: { user_id: userId } },
        body: { title: "Shared draft" },
      });
      assert.ok(created.data);
      const task = created.data;
      assert.equal(task.version, 1);
      assert.equal(created.response.headers.get("ETag"), etagOf(task));
      const path = { user_id: userId, task_id: task.id };

      // Tab A writes with the version it read...
      const first = await api.PATCH("/api/{user_id}/tasks/{task_id}", {
        params: { path, header: ifMatch(task) },
        body: { title: "Tab A" },
      });
      assert.equal(first.response.status, 200);
      assert.equal(first.data?.version, 2);
      assert.equal(first.response.headers.get("ETag"), '"2"');

      // ...so tab B, which read the same version, is told instead of overwriting it.
      const second = await api.PATCH("/api/{user_id}/tasks/{task_id}", {
        params: { path, header: ifMatch(task) },
        body: { title: "Tab B" },
      });
      const problem = assertProblem(second, 412, "/problems/precondition-failed");
      assert.equal(problem.current_version, 2);

      const reread = await api.GET("/api/{user_id}/tasks/{task_id}", { params: { path } });
      assert.equal(reread.data?.title, "Tab A");
      assert.equal(reread.data?.version, 2);

      // A read that already has the current version gets a 304 and no body.
      const unchanged = await api.GET("/api/{user_id}/tasks/{task_id}", {
        params: { path, header: { "If-None-Match": '"2"' } },
      });
      assert.equal(unchanged.response.status, 304);
      assert.equal(unchanged.response.headers.get("ETag"), '"2"');
    });
  });

  describe("retries: Idempotency-Key", () => {
    it("a retry with the same key gets the first response again, and one task exists", async () => {
      const { id: userId, api } = await newUser("retry");
      const send = () =>
        api.POST("/api/{user_id}/tasks", {
          params: { path: { user_id: userId }, header: { "Idempotency-Key": "rent-2026-12" } },
          body: { title: "Pay rent" },
        });
      const first = await send();
      assert.equal(first.response.status, 201);
      assert.equal(first.response.headers.get("Idempotent-Replayed"), null);
      const retry = await send();
      assert.equal(retry.response.status, 201);
      assert.equal(retry.response.headers.get("Idempotent-Replayed"), "true");
      assert.deepEqual(retry.data, first.data);
      assert.equal(retry.response.headers.get("Location"), first.response.headers.get("Location"));

      const reused = await api.POST("/api/{user_id}/tasks", {
        params: { path: { user_id: userId }, header: { "Idempotency-Key": "rent-2026-12" } },
        body: { title: "Something else" },
      });
      assertProblem(reused, 422, "/problems/idempotency-key-reused");

      const page = await api.GET("/api/{user_id}/tasks", { params: { path: { user_id: userId } } });
      assert.equal(page.data?.total, 1);
    });

    it("withRetries survives a lost response: the retry is answered from the first, not written twice", async () => {
      const { id: userId, token } = await newUser("lost-response");
      let calls = 0;
      const keys: (string | null)[] = [];
      // The first response is lost on the way back, after the server wrote.
      const flakyFetch = async (request: Request) => {
        keys.push(request.headers.get("Idempotency-Key"));
        const response = await fetch(request);
        if (++calls === 1) {
          await response.arrayBuffer();
          throw new TypeError("fetch failed: connection reset");
        }
        return response;
      };
      const api = createTodoClient({ baseUrl: server.baseUrl, getToken: () => token, fetch: flakyFetch });

      const created = await withRetries((key) =>
        api.POST("/api/{user_id}/tasks", {
          params: { path: { user_id: userId }, header: { "Idempotency-Key": key } },
          body: { title: "Book flights" },
        }),
      );
      assert.equal(created.response.status, 201);
      assert.equal(created.response.headers.get("Idempotent-Replayed"), "true");
      assert.equal(keys.length, 2);
      assert.ok(keys[0] && keys[0] === keys[1], "both attempts carried one key");

      const toggled = await withRetries((key) =>
        api.PATCH("/api/{user_id}/tasks/{task_id}/complete", {
          params: { path: { user_id: userId, task_id: created.data!.id }, header: { "Idempotency-Key": key } },
        }),
      );
      assert.equal(toggled.data?.completed, true);

      const page = await api.GET("/api/{user_id}/tasks", { params: { path: { user_id: userId } } });
      assert.equal(page.data?.total, 1);
    });

    it("withRetries waits out a 429 for its Retry-After; every response says where the user stands", async () => {
      const { id: userId, token } = await newUser("rate-limited");
      const sentAt: number[] = [];
      // The first attempt meets the rate limit (as a server under a lower
      // RATE_LIMIT would answer); the second goes through.
      const limitedFetch = async (request: Request) => {
        sentAt.push(Date.now());
        if (sentAt.length > 1) return fetch(request);
        const problem = { type: "/problems/rate-limited", title: "Too Many Requests", status: 429, detail: "over" };
        return new Response(JSON.stringify(problem), {
          status: 429,
          headers: {
            "Content-Type": "application/problem+json",
            "Retry-After": "1",
            RateLimit: '"default";r=0;t=1',
            "RateLimit-Policy": '"default";q=600;w=60',
          },
        });
      };
      const api = createTodoClient({ baseUrl: server.baseUrl, getToken: () => token, fetch: limitedFetch });
      const created = await withRetries((key) =>
        api.POST("/api/{user_id}/tasks", {
          params: { path: { user_id: userId }, header: { "Idempotency-Key": key } },
          body: { title: "After the wait" },
        }),
      );
      assert.equal(created.response.status, 201);
      assert.equal(sentAt.length, 2);
      assert.ok(sentAt[1]! - sentAt[0]! >= 1000, `retried after ${sentAt[1]! - sentAt[0]!} ms`);
      // The test server's RATE_LIMIT is 1000000/min.
      assert.equal(created.response.headers.get("RateLimit-Policy"), '"default";q=1000000;w=60');
      assert.match(created.response.headers.get("RateLimit") ?? "", /^"default";r=\d+;t=\d+$/);
    });

    it("the client gives a create without a key a fresh one", async () => {
      const { id: userId, token } = await newUser("auto-key");
      const sent: (string | null)[] = [];
      const recordingFetch = async (request: Request) => {
        sent.push(request.headers.get("Idempotency-Key"));
        return fetch(request);
      };
      const api = createTodoClient({ baseUrl: server.baseUrl, getToken: () => token, fetch: recordingFetch });
      await createTask(api, userId, { title: "one" });
      await createTask(api, userId, { title: "two" });
      await api.GET("/api/{user_id}/tasks", { params: { path: { user_id: userId } } });
      assert.equal(sent.length, 3);
      assert.match(sent[0] ?? "", /^[0-9a-f-]{36}$/);
      assert.notEqual(sent[0], sent[1], "each new create has its own key");
      assert.equal(sent[2], null, "a list takes no key");
    });
  });

  describe("sync: the change feed, trash and restore", () => {
    /** `[task_id, op]` of each change, in order. */
    const ops = (changes: Change[]) => changes.map((c) => [c.task_id, c.op]);

    async function trash(api: TodoClient, userId: string, task: Task) {
      const { response } = await api.DELETE("/api/{user_id}/tasks/{task_id}", {
        params: { path: { user_id: userId, task_id: task.id } },
      });
      assert.equal(response.status, 204);
    }

    it("a full sync returns every task; sync(cursor) then returns exactly the later changes", async () => {
      const { id: userId, api } = await newUser("sync");
      const a = await createTask(api, userId, { title: "A" });
      const b = await createTask(api, userId, { title: "B", tags: ["work"] });
      const c = await createTask(api, userId, { title: "C" });
      const d = await createTask(api, userId, { title: "D" });
      await trash(api, userId, d);

      const full = await sync(api, userId);
      assert.deepEqual(ops(full.changes), [
        [a.id, "upsert"],
        [b.id, "upsert"],
        [c.id, "upsert"],
        [d.id, "trash"],
      ]);
      assert.deepEqual(full.changes[0]?.task, a);
      assert.deepEqual(full.changes[1]?.task, b);
      const trashed = await api.GET("/api/{user_id}/trash", { params: { path: { user_id: userId } } });
      assert.equal(trashed.response.status, 200);
      assert.deepEqual(trashed.data?.items, [full.changes[3]?.task]);
      assert.match(full.changes[3]?.task?.deleted_at ?? "", RFC3339_UTC);
      assert.equal(typeof full.cursor, "string");

      // A create, a patch, a delete to the trash and a delete for good.
      const e = await createTask(api, userId, { title: "E" });
      const patched = await api.PATCH("/api/{user_id}/tasks/{task_id}", {
        params: { path: { user_id: userId, task_id: a.id } },
        body: { title: "A, edited" },
      });
      assert.ok(patched.data);
      await trash(api, userId, b);
      const purged = await api.DELETE("/api/{user_id}/trash/{task_id}", {
        params: { path: { user_id: userId, task_id: d.id } },
      });
      assert.equal(purged.response.status, 204);

      const next = await sync(api, userId, full.cursor);
      assert.deepEqual(ops(next.changes), [
        [e.id, "upsert"],
        [a.id, "upsert"],
        [b.id, "trash"],
        [d.id, "delete"],
      ]);
      const [created, edited, binned, gone] = next.changes;
      assert.deepEqual(created?.task, e);
      assert.deepEqual(edited?.task, patched.data);
      assert.equal(binned?.task?.title, "B");
      assert.deepEqual(binned?.task?.tags, ["work"]);
      assert.match(binned?.task?.deleted_at ?? "", RFC3339_UTC);
      assert.equal(gone?.task, null);
      const seqs = next.changes.map((change) => change.seq);
      assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), "oldest first");
      assert.ok((seqs[0] ?? 0) > (full.changes.at(-1)?.seq ?? Infinity));
      assert.notEqual(next.cursor, full.cursor);

      // Caught up: nothing more, and the cursor stays.
      const again = await sync(api, userId, next.cursor);
      assert.deepEqual(again, { changes: [], cursor: next.cursor });

      // The full sync with the changes applied is the task list.
      const tasks = applyChanges(applyChanges(new Map(), full.changes), next.changes);
      const list = await api.GET("/api/{user_id}/tasks", { params: { path: { user_id: userId }, query: { order: "asc" } } });
      assert.deepEqual([...tasks.values()].sort((x, y) => x.id - y.id), list.data?.items);
    });

    it("pages through the feed: with limit 2, one sync() returns all 5 tasks", async () => {
      const { id: userId, token } = await newUser("sync-pages");
      const requested: URLSearchParams[] = [];
      const recordingFetch = async (request: Request) => {
        if (request.method === "GET") requested.push(new URL(request.url).searchParams);
        return fetch(request);
      };
      const api = createTodoClient({ baseUrl: server.baseUrl, getToken: () => token, fetch: recordingFetch });
      const ids: number[] = [];
      for (const title of ["one", "two", "three", "four", "five"]) ids.push((await createTask(api, userId, { title })).id);

      const full = await sync(api, userId, undefined, { limit: 2 });
      assert.deepEqual(
        full.changes.map((change) => change.task_id),
        ids,
      );
      assert.ok(full.changes.every((change) => change.op === "upsert"));
      assert.deepEqual(
        requested.map((query) => query.get("limit")),
        ["2", "2", "2"],
      );
      assert.equal(requested[0]?.has("since"), false, "a full sync sends no cursor");
      assert.ok(requested[1]?.get("since") && requested[2]?.get("since") !== requested[1]?.get("since"));

      const caughtUp = await sync(api, userId, full.cursor, { limit: 2 });
      assert.deepEqual(caughtUp, { changes: [], cursor: full.cursor });
    });

    it("a malformed cursor is a 422, an expired one a CursorExpiredError; restoreTask brings a task back", async () => {
      const { id: userId, api } = await newUser("sync-errors");

      await assert.rejects(sync(api, userId, "not a cursor"), (error: unknown) => {
        assert.ok(error instanceof ProblemError);
        assert.ok(!(error instanceof CursorExpiredError));
        assert.equal(error.status, 422);
        assert.deepEqual(
          error.problem?.errors?.map((e) => e.field),
          ["since"],
        );
        return true;
      });

      // Well-formed, but past this user's last change: not a cursor this
      // server gave out, so (like one older than CHANGES_RETENTION) a 410.
      const unknown = Buffer.alloc(8);
      unknown.writeBigInt64BE(1_000_000n);
      await assert.rejects(sync(api, userId, unknown.toString("base64url")), (error: unknown) => {
        assert.ok(error instanceof CursorExpiredError);
        assert.equal(error.status, 410);
        assert.equal(error.problem?.type, "/problems/cursor-expired");
        assert.equal(error.name, "CursorExpiredError");
        return true;
      });

      const task = await createTask(api, userId, { title: "Oops", tags: ["keep"] });
      await trash(api, userId, task);
      const { cursor } = await sync(api, userId);
      const restored = await api.POST("/api/{user_id}/trash/{task_id}/restore", {
        params: { path: { user_id: userId, task_id: task.id } },
      });
      assert.equal(restored.response.status, 200);
      assert.ok(restored.data);
      assert.equal(restored.data.deleted_at, null);
      assert.equal(restored.data.title, "Oops");
      assert.deepEqual(restored.data.tags, ["keep"]);
      const got = await api.GET("/api/{user_id}/tasks/{task_id}", {
        params: { path: { user_id: userId, task_id: task.id } },
      });
      assert.deepEqual(got.data, restored.data);
      const later = await sync(api, userId, cursor);
      assert.deepEqual(later.changes.map((change) => [change.op, change.task]), [["upsert", restored.data]]);
    });
  });

  describe("live updates: subscribe", () => {
    /** `[task_id, op]` of each change, in order. */
    const ops = (changes: Change[]) => changes.map((c) => [c.task_id, c.op]);
    /** The position a cursor stands for: 8 big-endian bytes, base64url. */
    const seqOf = (cursor: string) => Number(Buffer.from(cursor, "base64url").readBigInt64BE());

    async function until(what: string, done: () => boolean, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (!done()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    }

    /**
     * Subscribes, recording every change with its cursor; resolves once the
     * stream is open. `stop()` aborts it and waits for `subscribe` to resolve.
     */
    async function live(api: TodoClient, userId: string, since?: string) {
      const received: { change: Change; cursor: string }[] = [];
      const errors: unknown[] = [];
      let opens = 0;
      const controller = new AbortController();
      const done = subscribe(api, userId, {
        since,
        signal: controller.signal,
        onOpen: () => opens++,
        onError: (error) => errors.push(error),
        onChange: (change, cursor) => void received.push({ change, cursor }),
      });
      let settled: unknown = "pending";
      done.then(
        () => (settled = "resolved"),
        (error: unknown) => (settled = error),
      );
      await until("the stream to open", () => opens > 0 || settled !== "pending");
      assert.equal(settled, "pending", `subscribe ended before the stream opened: ${String(settled)}`);
      return {
        received,
        errors,
        opens: () => opens,
        changes: () => received.map((r) => r.change),
        /** Waits until `n` changes came, then a little longer to catch a duplicate. */
        async expect(n: number) {
          await until(`${n} changes (have ${received.length})`, () => received.length >= n);
          await new Promise((r) => setTimeout(r, 200));
          assert.equal(received.length, n, "no change arrives twice");
        },
        async stop() {
          controller.abort();
          await done;
        },
      };
    }

    it("streams a create, a toggle and a delete in order, each with the cursor after it", async () => {
      const { id: userId, api } = await newUser("live");
      const stream = await live(api, userId);
      try {
        const task = await createTask(api, userId, { title: "Watch me" });
        const path = { user_id: userId, task_id: task.id };
        const toggled = await api.PATCH("/api/{user_id}/tasks/{task_id}/complete", { params: { path } });
        assert.equal(toggled.data?.completed, true);
        const deleted = await api.DELETE("/api/{user_id}/tasks/{task_id}", { params: { path } });
        assert.equal(deleted.response.status, 204);

        await stream.expect(3);
        assert.deepEqual(ops(stream.changes()), [
          [task.id, "upsert"],
          [task.id, "upsert"],
          [task.id, "trash"],
        ]);
        const [created, completed, trashed] = stream.changes();
        assert.deepEqual(created?.task, task);
        assert.deepEqual(completed?.task, toggled.data);
        assert.equal(trashed?.task?.title, "Watch me");
        assert.match(trashed?.task?.deleted_at ?? "", RFC3339_UTC);
        // Each event's id is the cursor just after its change...
        for (const { change, cursor } of stream.received) assert.equal(seqOf(cursor), change.seq);
        // ...so it works as a sync cursor (the feed shows the task once, at its
        // latest state), and the last one is where a full sync stands.
        const first = stream.received[0]?.cursor ?? "";
        const rest = await sync(api, userId, first);
        assert.deepEqual(rest.changes, [trashed]);
        assert.equal(rest.cursor, stream.received[2]?.cursor);
        assert.equal((await sync(api, userId)).cursor, stream.received[2]?.cursor);
        assert.deepEqual(stream.errors, []);
      } finally {
        await stream.stop();
      }
    });

    it("since a sync's cursor: replays what changed after it exactly once, then goes live", async () => {
      const { id: userId, api } = await newUser("live-resume");
      const a = await createTask(api, userId, { title: "A" });
      const { cursor } = await sync(api, userId);
      // Changed while no stream was open:
      const b = await createTask(api, userId, { title: "B" });
      const renamed = await api.PATCH("/api/{user_id}/tasks/{task_id}", {
        params: { path: { user_id: userId, task_id: a.id } },
        body: { title: "A, renamed" },
      });
      assert.ok(renamed.data);

      const stream = await live(api, userId, cursor);
      try {
        await stream.expect(2);
        assert.deepEqual(ops(stream.changes()), [
          [b.id, "upsert"],
          [a.id, "upsert"],
        ]);
        assert.deepEqual(stream.changes()[1]?.task, renamed.data);

        const c = await createTask(api, userId, { title: "C" });
        await stream.expect(3);
        assert.deepEqual(stream.changes()[2]?.task, c);
        assert.equal(stream.opens(), 1);
      } finally {
        await stream.stop();
      }
    });

    it("reconnects when the token expires, with a fresh token, resuming after the last change", async () => {
      const userId = `live-expiry-${++userCounter}-${process.pid}`;
      const tokens: string[] = [];
      const resumedFrom: (string | null)[] = [];
      // Each token lives 2 s, so the server ends each stream after 1 to 2 s.
      const shortLived = createTodoClient({
        baseUrl: server.baseUrl,
        getToken: async () => {
          const token = await server.token(userId, { ttl: "2s" });
          tokens.push(token);
          return token;
        },
        fetch: async (request: Request) => {
          if (request.url.endsWith("/events")) resumedFrom.push(request.headers.get("Last-Event-ID"));
          return fetch(request);
        },
      });
      const api = createTodoClient({ baseUrl: server.baseUrl, getToken: () => server.token(userId) });

      const stream = await live(shortLived, userId);
      try {
        const first = await createTask(api, userId, { title: "before expiry" });
        await stream.expect(1);
        const reconnects = resumedFrom.length;
        await until("a reconnect", () => stream.opens() >= 2, 15_000);
        const second = await createTask(api, userId, { title: "after expiry" });
        await stream.expect(2);

        assert.deepEqual(
          stream.changes().map((c) => c.task?.id),
          [first.id, second.id],
        );
        assert.equal(resumedFrom[0], null, "the first connect sends no Last-Event-ID");
        assert.equal(resumedFrom[reconnects], stream.received[0]?.cursor, "the reconnect resumes after the last change");
        assert.equal(new Set(tokens).size, tokens.length, "every connect asked getToken for a fresh token");
        assert.equal(tokens.length, resumedFrom.length);
        assert.deepEqual(stream.errors, [], "a stream ended by the server is no error");
      } finally {
        await stream.stop();
      }
    });

    it("retries after a network error, calling onError", async () => {
      const { id: userId, token } = await newUser("live-flaky");
      let attempts = 0;
      const flaky = createTodoClient({
        baseUrl: server.baseUrl,
        getToken: () => token,
        fetch: async (request: Request) => {
          if (request.url.endsWith("/events") && ++attempts === 1) throw new TypeError("fetch failed: connection refused");
          return fetch(request);
        },
      });
      const api = createTodoClient({ baseUrl: server.baseUrl, getToken: () => token });
      const stream = await live(flaky, userId);
      try {
        assert.equal(attempts, 2);
        assert.equal(stream.errors.length, 1);
        assert.match(String(stream.errors[0]), /connection refused/);
        const task = await createTask(api, userId, { title: "still live" });
        await stream.expect(1);
        assert.deepEqual(stream.changes()[0]?.task, task);
      } finally {
        await stream.stop();
      }
    });

    it("rejects: an expired cursor with CursorExpiredError, other 4xx with a ProblemError", async () => {
      const { id: userId, api } = await newUser("live-errors");
      const never = () => assert.fail("no change expected");

      // Well-formed, but not a cursor this server gave out: like one too old.
      const unknown = Buffer.alloc(8);
      unknown.writeBigInt64BE(1_000n);
      await assert.rejects(subscribe(api, userId, { since: unknown.toString("base64url"), onChange: never }), (error: unknown) => {
        assert.ok(error instanceof CursorExpiredError);
        assert.equal(error.status, 410);
        assert.equal(error.problem?.type, "/problems/cursor-expired");
        return true;
      });

      const rejectsWith = async (status: number, promise: Promise<void>) =>
        assert.rejects(promise, (error: unknown) => {
          assert.ok(error instanceof ProblemError);
          assert.ok(!(error instanceof CursorExpiredError));
          assert.equal(error.status, status);
          assert.equal(error.problem?.status, status);
          return true;
        });
      await rejectsWith(422, subscribe(api, userId, { since: "not a cursor", onChange: never }));
      const other = await newUser("live-intruder");
      await rejectsWith(403, subscribe(other.api, userId, { onChange: never }));
      const anonymous = createTodoClient({ baseUrl: server.baseUrl });
      await rejectsWith(401, subscribe(anonymous, userId, { onChange: never }));

      // MAX_STREAMS_PER_USER (10) open: one more is a 429.
      const open = [];
      try {
        for (let i = 0; i < 10; i++) open.push(await live(api, userId));
        await rejectsWith(429, subscribe(api, userId, { onChange: never }));
      } finally {
        await Promise.all(open.map((stream) => stream.stop()));
      }
    });
  });

  describe("listing: filters, sorts, pagination, tags, stats", () => {
    let userId: string;
    let api: TodoClient;
    const ids: Record<"A" | "B" | "C" | "D" | "E", number> = { A: 0, B: 0, C: 0, D: 0, E: 0 };
    type Key = keyof typeof ids;

    before(async () => {
      ({ id: userId, api } = await newUser("lister"));
      // Created in this order, so ids and created_at ascend A..E. Dates are far
      // in the past or future so `overdue` does not depend on today's date.
      const seed: [Key, NewTask][] = [
        ["A", { title: "Buy milk", description: "2% fat", priority: "low", tags: ["home", "errands"], due_date: "2001-01-10T09:00:00Z" }],
        ["B", { title: "Write report", description: "QUARTERLY numbers", priority: "high", tags: ["work"], due_date: "2999-03-01T17:00:00Z" }],
        ["C", { title: "Crème BRÛLÉE recipe", tags: ["Home"] }],
        ["D", { title: "Pay 100% of invoice_7", priority: "high", tags: ["work", "errands", "urgent"], due_date: "2001-02-15T12:00:00Z" }],
        ["E", { title: "Archive old mail", priority: "low", due_date: "2000-12-31T23:00:00Z" }],
      ];
      for (const [key, body] of seed) ids[key] = (await createTask(api, userId, body)).id;
      // Then change D, E and A in that order, so updated_at ascends B, C, D, E, A.
      const path = (key: Key) => ({ user_id: userId, task_id: ids[key] });
      const toggled = await api.PATCH("/api/{user_id}/tasks/{task_id}/complete", { params: { path: path("D") } });
      assert.equal(toggled.data?.completed, true);
      const completed = await api.PATCH("/api/{user_id}/tasks/{task_id}", {
        params: { path: path("E") },
        body: { completed: true },
      });
      assert.equal(completed.data?.completed, true);
      const edited = await api.PATCH("/api/{user_id}/tasks/{task_id}", {
        params: { path: path("A") },
        body: { description: "2% fat, 1 litre" },
      });
      assert.equal(edited.data?.description, "2% fat, 1 litre");
    });

    /** Lists with `query` and returns the page's task keys (A..E) in order, plus the page. */
    async function list(query: ListTasksQuery) {
      const { data, error, response } = await api.GET("/api/{user_id}/tasks", {
        params: { path: { user_id: userId }, query },
      });
      assert.equal(response.status, 200, JSON.stringify(error));
      assert.ok(data);
      const byId = new Map(Object.entries(ids).map(([k, v]) => [v, k]));
      const keys = data.items.map((t) => byId.get(t.id) ?? `?${t.id}`).join("");
      return { keys, page: data };
    }

    it("lists newest first by default, with total, limit and offset", async () => {
      const { keys, page } = await list({});
      assert.equal(keys, "EDCBA");
      assert.equal(page.total, 5);
      assert.equal(page.limit, 20);
      assert.equal(page.offset, 0);
      const e = page.items[0];
      assert.ok(e);
      assert.equal(e.title, "Archive old mail");
      assert.equal(e.completed, true);
      assert.equal(e.due_date, "2000-12-31T23:00:00Z");
    });

    it("filters by status", async () => {
      assert.equal((await list({ status: "all" })).keys, "EDCBA");
      const pending = await list({ status: "pending" });
      assert.equal(pending.keys, "CBA");
      assert.equal(pending.page.total, 3);
      const completed = await list({ status: "completed" });
      assert.equal(completed.keys, "ED");
      assert.equal(completed.page.total, 2);
      assert.ok(completed.page.items.every((t) => t.completed && t.completed_at));
    });

    it("filters by priority", async () => {
      assert.equal((await list({ priority: "high" })).keys, "DB");
      assert.equal((await list({ priority: "medium" })).keys, "C");
      assert.equal((await list({ priority: "low" })).keys, "EA");
    });

    it("filters by tag (trimmed, lower-cased)", async () => {
      assert.equal((await list({ tag: "home" })).keys, "CA");
      assert.equal((await list({ tag: "  HOME " })).keys, "CA");
      assert.equal((await list({ tag: "errands" })).keys, "DA");
      assert.equal((await list({ tag: "nope" })).page.total, 0);
    });

    it("searches q case-insensitively in title and description, Unicode-aware, % and _ literal", async () => {
      assert.equal((await list({ q: "milk" })).keys, "A");
      assert.equal((await list({ q: "quarterly" })).keys, "B", "matches the description");
      assert.equal((await list({ q: "brûlée" })).keys, "C", "Unicode case folding");
      assert.equal((await list({ q: "100%" })).keys, "D");
      assert.equal((await list({ q: "%" })).keys, "DA", "% is literal, not a wildcard");
      assert.equal((await list({ q: "_" })).keys, "D", "_ is literal, not a wildcard");
      assert.equal((await list({ q: "zzz" })).page.total, 0);
    });

    it("filters by due_before (strict) and due_after (inclusive)", async () => {
      assert.equal((await list({ due_before: "2001-02-15T12:00:00Z" })).keys, "EA");
      assert.equal((await list({ due_before: "2001-02-15T13:00:00+01:00" })).keys, "EA", "any offset");
      assert.equal((await list({ due_after: "2001-02-15T12:00:00Z" })).keys, "DB");
      const both = await list({ due_after: "2001-01-01T00:00:00Z", due_before: "2999-03-01T17:00:00Z" });
      assert.equal(both.keys, "DA");
      assert.equal(both.page.total, 2);
    });

    it("combines filters", async () => {
      assert.equal((await list({ status: "pending", priority: "high" })).keys, "B");
      assert.equal((await list({ status: "completed", tag: "errands" })).keys, "D");
    });

    it("sorts by each field in each direction, ties broken by id", async () => {
      assert.equal((await list({ sort: "created_at" })).keys, "EDCBA", "order defaults to desc");
      assert.equal((await list({ sort: "created_at", order: "asc" })).keys, "ABCDE");
      assert.equal((await list({ order: "asc" })).keys, "ABCDE", "sort defaults to created_at");
      assert.equal((await list({ sort: "updated_at", order: "asc" })).keys, "BCDEA");
      assert.equal((await list({ sort: "updated_at", order: "desc" })).keys, "AEDCB");
      assert.equal((await list({ sort: "title", order: "asc" })).keys, "EACDB");
      assert.equal((await list({ sort: "title", order: "desc" })).keys, "BDCAE");
      assert.equal((await list({ sort: "priority", order: "asc" })).keys, "AECBD");
      assert.equal((await list({ sort: "priority", order: "desc" })).keys, "DBCEA");

      // Tasks without a due date are still listed; the dated ones are in order.
      const dueAsc = (await list({ sort: "due_date", order: "asc" })).keys;
      assert.equal(dueAsc.length, 5);
      assert.equal(dueAsc.replace("C", ""), "EADB");
      const dueDesc = (await list({ sort: "due_date", order: "desc" })).keys;
      assert.equal(dueDesc.length, 5);
      assert.equal(dueDesc.replace("C", ""), "BDAE");
    });

    it("pages with limit and offset; total counts every match", async () => {
      const pages: string[] = [];
      for (let offset = 0; offset < 5; offset += 2) {
        const { keys, page } = await list({ limit: 2, offset });
        assert.equal(page.total, 5);
        assert.equal(page.limit, 2);
        assert.equal(page.offset, offset);
        pages.push(keys);
      }
      assert.deepEqual(pages, ["ED", "CB", "A"]);

      const past = await list({ limit: 2, offset: 10 });
      assert.equal(past.keys, "");
      assert.equal(past.page.total, 5);

      const filtered = await list({ status: "pending", sort: "title", order: "asc", limit: 2, offset: 1 });
      assert.equal(filtered.keys, "CB");
      assert.equal(filtered.page.total, 3);

      assert.equal((await list({ limit: 100 })).page.limit, 100);
    });

    it("rejects out-of-range limit with a typed 422 naming the field", async () => {
      for (const limit of [0, 101]) {
        const result = await api.GET("/api/{user_id}/tasks", {
          params: { path: { user_id: userId }, query: { limit } },
        });
        const problem = assertProblem(result, 422);
        assert.deepEqual(
          problem.errors?.map((e) => e.field),
          ["limit"],
        );
      }
    });

    it("counts tags", async () => {
      const { data, response } = await api.GET("/api/{user_id}/tags", { params: { path: { user_id: userId } } });
      assert.equal(response.status, 200);
      assert.ok(data);
      assert.deepEqual(
        [...data].sort((a, b) => a.name.localeCompare(b.name)),
        [
          { name: "errands", count: 2 },
          { name: "home", count: 2 },
          { name: "urgent", count: 1 },
          { name: "work", count: 2 },
        ],
      );
    });

    it("reports stats", async () => {
      const { data, response } = await api.GET("/api/{user_id}/stats", { params: { path: { user_id: userId } } });
      assert.equal(response.status, 200);
      // A is pending and due in 2001: the only overdue task (D and E are completed).
      assert.deepEqual(data, { total: 5, completed: 2, pending: 3, overdue: 1 });
    });
  });

  it("GET /me returns the token's claims as stored", async () => {
    const { id, api } = await newUser("me", { email: "ada@example.com", name: "Ada Lovelace" });
    const { data, response } = await api.GET("/api/{user_id}/me", { params: { path: { user_id: id } } });
    assert.equal(response.status, 200);
    assert.ok(data);
    assert.equal(data.id, id);
    assert.equal(data.email, "ada@example.com");
    assert.equal(data.name, "Ada Lovelace");
    assert.match(data.created_at, RFC3339_UTC);

    const anonymous = await newUser("me-bare");
    const bare = await anonymous.api.GET("/api/{user_id}/me", { params: { path: { user_id: anonymous.id } } });
    assert.ok(bare.data);
    assert.equal(bare.data.email, null);
    assert.equal(bare.data.name, null);
  });

  describe("typed errors", () => {
    it("422 for an empty title, as a problem+json listing the field", async () => {
      const { id: userId, api } = await newUser("invalid");
      const result = await api.POST("/api/{user_id}/tasks", {
        params: { path: { user_id: userId } },
        body: { title: "   " },
      });
      assert.equal(result.data, undefined);
      const problem = assertProblem(result, 422);
      assert.equal(problem.title, "Unprocessable Entity");
      assert.ok(problem.errors);
      assert.equal(problem.errors.length, 1);
      assert.equal(problem.errors[0]?.field, "title");
      assert.ok((problem.errors[0]?.message ?? "").length > 0);
    });

    it("422 lists every bad field once", async () => {
      const { id: userId, api } = await newUser("invalid-many");
      const result = await api.POST("/api/{user_id}/tasks", {
        params: { path: { user_id: userId } },
        body: {
          title: "x".repeat(201),
          description: "d".repeat(1001),
          tags: Array.from({ length: 21 }, (_, i) => `t${i}`),
        },
      });
      const problem = assertProblem(result, 422);
      assert.deepEqual(problem.errors?.map((e) => e.field).sort(), ["description", "tags", "title"]);
      const list = await api.GET("/api/{user_id}/tasks", { params: { path: { user_id: userId } } });
      assert.equal(list.data?.total, 0, "nothing was stored");
    });

    it("400 for a body that is not JSON", async () => {
      const { id: userId, api } = await newUser("malformed");
      const result = await api.POST("/api/{user_id}/tasks", {
        params: { path: { user_id: userId } },
        body: { title: "never sent" },
        bodySerializer: () => "{not json",
      });
      assertProblem(result, 400);
    });

    it("404 for a missing task and for another user's task (never 403)", async () => {
      const alice = await newUser("alice");
      const bob = await newUser("bob");
      const secret = await createTask(alice.api, alice.id, { title: "Alice's secret" });

      const missing = await alice.api.GET("/api/{user_id}/tasks/{task_id}", {
        params: { path: { user_id: alice.id, task_id: secret.id + 1000 } },
      });
      assertProblem(missing, 404);

      const foreign = await bob.api.GET("/api/{user_id}/tasks/{task_id}", {
        params: { path: { user_id: bob.id, task_id: secret.id } },
      });
      const problem = assertProblem(foreign, 404);
      assert.equal(problem.detail, missing.error?.detail, "same body as a missing task");
      const patched = await bob.api.PATCH("/api/{user_id}/tasks/{task_id}", {
        params: { path: { user_id: bob.id, task_id: secret.id } },
        body: { title: "hijacked" },
      });
      assertProblem(patched, 404);
      const still = await alice.api.GET("/api/{user_id}/tasks/{task_id}", {
        params: { path: { user_id: alice.id, task_id: secret.id } },
      });
      assert.equal(still.data?.title, "Alice's secret");
    });
  });

  describe("authentication", () => {
    it("403 for another user's token on this user's path", async () => {
      const alice = await newUser("owner");
      const mallory = await newUser("intruder");
      await createTask(alice.api, alice.id, { title: "private" });

      const list = await mallory.api.GET("/api/{user_id}/tasks", { params: { path: { user_id: alice.id } } });
      assertProblem(list, 403);
      const create = await mallory.api.POST("/api/{user_id}/tasks", {
        params: { path: { user_id: alice.id } },
        body: { title: "planted" },
      });
      assertProblem(create, 403);
      const stats = await alice.api.GET("/api/{user_id}/stats", { params: { path: { user_id: alice.id } } });
      assert.equal(stats.data?.total, 1, "nothing was planted");
    });

    it("401 with a Bearer challenge without a token or with a bad one", async () => {
      const { id: userId } = await newUser("locked");
      const clients = {
        "no getToken": createTodoClient({ baseUrl: server.baseUrl }),
        "getToken returns null": createTodoClient({ baseUrl: server.baseUrl, getToken: () => null }),
        "getToken resolves undefined": createTodoClient({ baseUrl: server.baseUrl, getToken: async () => undefined }),
        "garbage token": createTodoClient({ baseUrl: server.baseUrl, getToken: () => "not.a.jwt" }),
      };
      for (const [label, api] of Object.entries(clients)) {
        const result = await api.GET("/api/{user_id}/tasks", { params: { path: { user_id: userId } } });
        const problem = assertProblem(result, 401);
        assert.equal(problem.title, "Unauthorized", label);
        assert.match(result.response.headers.get("www-authenticate") ?? "", /^Bearer /, label);
      }
    });

    it("an explicit Authorization header on a request wins over getToken", async () => {
      const alice = await newUser("explicit");
      const other = await newUser("explicit-other");
      const result = await other.api.GET("/api/{user_id}/me", {
        params: { path: { user_id: alice.id } },
        headers: { Authorization: `Bearer ${alice.token}` },
      });
      assert.equal(result.response.status, 200);
      assert.equal(result.data?.id, alice.id);
    });
  });
});
