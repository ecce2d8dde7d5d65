// Typed client for todo-api: openapi-fetch over the types generated from
// ../openapi.json (src/schema.ts; regenerate with `npm run generate`).
import { getLines, getMessages, type EventSourceMessage } from "@microsoft/fetch-event-source/lib/cjs/parse.js";
import createClient, { type Client, type ClientOptions, type Middleware } from "openapi-fetch";
import type { components, operations, paths } from "./schema.js";

export type { components, operations, paths } from "./schema.js";

type Schemas = components["schemas"];

/** A task, as every task endpoint returns it. */
export type Task = Schemas["Task"];
/** Body of `POST /api/{user_id}/tasks`. */
export type NewTask = Schemas["NewTask"];
/** Body of `PUT /api/{user_id}/tasks/{task_id}` (a `NewTask` plus optional `completed`). */
export type TaskReplacement = Schemas["TaskReplacement"];
/** Body of `PATCH /api/{user_id}/tasks/{task_id}`: absent = unchanged, `null` clears. */
export type TaskPatch = Schemas["TaskPatch"];
/** Response of `GET /api/{user_id}/tasks`. */
export type TaskPage = Schemas["TaskPage"];
/** Response of `GET /api/{user_id}/stats`. */
export type TaskStats = Schemas["TaskStats"];
/** One entry of `GET /api/{user_id}/tags`. */
export type TagCount = Schemas["TagCount"];
/** Response of `GET /api/{user_id}/me`. */
export type Me = Schemas["Me"];
/** Response of `GET /health`. */
export type Health = Schemas["Health"];
/** RFC 9457 problem document: the body of every error response (`application/problem+json`). */
export type Problem = Schemas["Problem"];
/** One invalid field of a 422 `Problem`. */
export type FieldError = Schemas["FieldError"];
export type Priority = Schemas["Priority"];
export type StatusFilter = Schemas["StatusFilter"];
export type SortField = Schemas["SortField"];
export type SortOrder = Schemas["SortOrder"];
/** Query parameters of `GET /api/{user_id}/tasks` (filters, sort, paging). */
export type ListTasksQuery = NonNullable<operations["listTasks"]["parameters"]["query"]>;
/**
 * One entry of the change feed (`GET /api/{user_id}/changes`, read by `sync`):
 * `op` says what happened to task `task_id`, and `task` is that task as it
 * is now: live for `"upsert"` (created, changed or restored), in the trash
 * (`deleted_at` set) for `"trash"`, `null` for `"delete"` (gone for good).
 */
export type Change = Schemas["Change"];
/** What a `Change` did: `"upsert"`, `"trash"` or `"delete"`. */
export type ChangeOp = Schemas["ChangeOp"];
/** One response of `GET /api/{user_id}/changes`; `sync` reads them all for you. */
export type ChangePage = Schemas["ChangePage"];

/** A task's entity tag, as its `ETag` header carries it: the version, quoted. */
export function etagOf(task: Pick<Task, "version">): string {
  return `"${task.version}"`;
}

/**
 * The `If-Match` header of a write that must not overwrite a change you have
 * not seen: the write applies only if the task is still at the version you
 * read, else it is a 412 `Problem` whose `current_version` is the version now
 * stored (read the task again, merge, retry).
 *
 * ```ts
 * await api.PATCH("/api/{user_id}/tasks/{task_id}", {
 *   params: { path: { user_id, task_id: task.id }, header: ifMatch(task) },
 *   body: { title: "Edited" },
 * });
 * ```
 */
export function ifMatch(task: Pick<Task, "version">): { "If-Match": string } {
  return { "If-Match": etagOf(task) };
}

/** Whether a request is one that takes an `Idempotency-Key`: a create or a toggle. */
function takesIdempotencyKey(request: Request): boolean {
  const path = new URL(request.url).pathname;
  return (
    (request.method === "POST" && /\/api\/[^/]+\/tasks$/.test(path)) ||
    (request.method === "PATCH" && /\/api\/[^/]+\/tasks\/[^/]+\/complete$/.test(path))
  );
}

/**
 * openapi-fetch middleware (installed by `createTodoClient`): every create
 * and toggle sent without an `Idempotency-Key` gets a fresh one (a random
 * UUID). To retry one of them, send the same key again: `withRetries` does.
 */
export function idempotencyKeys(): Middleware {
  return {
    onRequest({ request }) {
      if (!takesIdempotencyKey(request) || request.headers.has("Idempotency-Key")) return undefined;
      request.headers.set("Idempotency-Key", crypto.randomUUID());
      return request;
    },
  };
}

export interface RetryOptions {
  /** The key all attempts share; a random UUID by default. */
  idempotencyKey?: string;
  /** Attempts in all, the first included (default 3). */
  attempts?: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Sends a create or a toggle until it gets an answer, every attempt with the
 * same `Idempotency-Key`, so the server writes once however many arrive: a
 * network failure (the response lost), a 409 (the first attempt still in
 * progress), a 429 (over the rate limit) or a 503 is retried after
 * `Retry-After` (at most 10 s; else a short backoff). A
 * retry of a request that did go through gets its response again, with
 * `Idempotent-Replayed: true`.
 *
 * ```ts
 * const { data, error } = await withRetries((key) =>
 *   api.POST("/api/{user_id}/tasks", {
 *     params: { path: { user_id }, header: { "Idempotency-Key": key } },
 *     body: { title: "Pay rent" },
 *   }),
 * );
 * ```
 */
export async function withRetries<T extends { response: Response }>(
  send: (idempotencyKey: string) => Promise<T>,
  { idempotencyKey = crypto.randomUUID(), attempts = 3 }: RetryOptions = {},
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const backoff = 200 * 2 ** (attempt - 1);
    let result: T;
    try {
      result = await send(idempotencyKey);
    } catch (error) {
      if (attempt >= attempts) throw error;
      await sleep(backoff);
      continue;
    }
    const { status, headers } = result.response;
    if (![409, 429, 503].includes(status) || attempt >= attempts) return result;
    const retryAfter = Number(headers.get("Retry-After"));
    await sleep(Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(retryAfter, 10) * 1000 : backoff);
  }
}

/**
 * Returns the bearer token (a JWT) for the next request, or nothing to send
 * the request without one. Called once per request, so it may refresh or
 * cache as it likes. With Better Auth's JWT plugin:
 * `async () => (await authClient.token()).data?.token`.
 */
export type TokenGetter = () => string | null | undefined | Promise<string | null | undefined>;

export interface TodoClientOptions extends Omit<ClientOptions, "baseUrl"> {
  /** Where the API is served, e.g. `http://127.0.0.1:8000` (no `/api` suffix). */
  baseUrl: string;
  /** Supplies the `Authorization: Bearer` token; omit for a client without auth. */
  getToken?: TokenGetter;
}

/** An openapi-fetch client typed with this API's `paths`. */
export type TodoClient = Client<paths>;

/**
 * openapi-fetch middleware that sets `Authorization: Bearer <token>` from
 * `getToken()` on each request, unless the request already has an
 * `Authorization` header or `getToken()` returns nothing.
 */
export function bearerAuth(getToken: TokenGetter): Middleware {
  return {
    async onRequest({ request }) {
      if (request.headers.has("Authorization")) return undefined;
      const token = await getToken();
      if (token) request.headers.set("Authorization", `Bearer ${token}`);
      return request;
    },
  };
}

/**
 * Creates a typed client. Call it like openapi-fetch:
 *
 * ```ts
 * const api = createTodoClient({ baseUrl, getToken });
 * const { data, error } = await api.GET("/api/{user_id}/tasks", {
 *   params: { path: { user_id }, query: { status: "pending", sort: "due_date", order: "asc" } },
 * });
 * ```
 *
 * `data` is typed by the success response, `error` is a `Problem`.
 */
export function createTodoClient({ getToken, ...options }: TodoClientOptions): TodoClient {
  const client = createClient<paths>(options);
  client.use(idempotencyKeys());
  if (getToken) client.use(bearerAuth(getToken));
  return client;
}

/**
 * A request answered with an error status: `status` is the HTTP status,
 * `problem` the `Problem` body (`undefined` if the body was not one, e.g.
 * from a proxy). Thrown by `sync` and `subscribe`; the plain client calls
 * return their `error` instead of throwing.
 */
export class ProblemError extends Error {
  override name = "ProblemError";
  readonly status: number;
  readonly problem: Problem | undefined;
  readonly response: Response;

  constructor(response: Response, problem: Problem | undefined) {
    const summary = problem ? `${problem.title}: ${problem.detail}` : response.statusText;
    super(`${response.status} ${summary}`.trim());
    this.status = response.status;
    this.problem = problem;
    this.response = response;
  }
}

/**
 * Thrown by `sync` (and `subscribe`) when the server no longer honours the cursor (410,
 * `/problems/cursor-expired`): it is older than the deletions the server
 * remembers (`CHANGES_RETENTION`, 30 days by default), or not one this
 * server gave out (e.g. after a database reset). Throw away the local copy
 * and the cursor, and run a full sync: `sync(api, userId)`.
 */
export class CursorExpiredError extends ProblemError {
  override name = "CursorExpiredError";
}

/** The error for an error response: a `CursorExpiredError` for a 410 `/problems/cursor-expired`, else a `ProblemError`. */
function problemError(response: Response, body: unknown): ProblemError {
  const problem = typeof body === "object" && body !== null ? (body as Problem) : undefined;
  if (response.status === 410 && problem?.type === "/problems/cursor-expired") {
    return new CursorExpiredError(response, problem);
  }
  return new ProblemError(response, problem);
}

export interface SyncOptions {
  /**
   * Most changes per request, 1 to 1000 (default 500). `sync` requests page
   * after page until it has them all, so this only trades the number of
   * round trips against the size of each response.
   */
  limit?: number;
  /** Aborts the sync (the request in flight rejects with an `AbortError`). */
  signal?: AbortSignal;
}

/** All changes since a cursor, and the cursor to sync from next time. */
export interface SyncResult {
  /** Oldest first; apply them in this order (`applyChanges` does). */
  changes: Change[];
  /** Store it with your copy of the tasks and pass it to the next `sync`. */
  cursor: string;
}

/**
 * Everything that changed in the user's tasks since `cursor`, reading the
 * change feed page after page until it is caught up. Without a cursor it is
 * a full sync: every live task as an `"upsert"` and every trashed one as a
 * `"trash"`. Each task shows once, at its latest state (a task changed again
 * while `sync` is still paging can show once more, later in the list).
 *
 * ```ts
 * let tasks = new Map<number, Task>();
 * let cursor: string | undefined; // persist both, e.g. in IndexedDB
 *
 * async function refresh() {
 *   try {
 *     const result = await sync(api, userId, cursor);
 *     applyChanges(tasks, result.changes);
 *     cursor = result.cursor;
 *   } catch (error) {
 *     if (!(error instanceof CursorExpiredError)) throw error;
 *     const result = await sync(api, userId); // start over: a full sync
 *     tasks = applyChanges(new Map(), result.changes);
 *     cursor = result.cursor;
 *   }
 * }
 * ```
 *
 * Throws `CursorExpiredError` when the cursor is too old (start over without
 * one), a `ProblemError` for any other error response (a malformed cursor is
 * a 422, a token for another user a 403), and rethrows network errors. It
 * only reads, so after a failure call it again with the same cursor: nothing
 * is lost or applied twice.
 */
export async function sync(
  client: TodoClient,
  userId: string,
  cursor?: string,
  { limit = 500, signal }: SyncOptions = {},
): Promise<SyncResult> {
  const changes: Change[] = [];
  let since = cursor;
  for (;;) {
    const { data, error, response } = await client.GET("/api/{user_id}/changes", {
      params: { path: { user_id: userId }, query: { since, limit } },
      signal,
    });
    if (!data) throw problemError(response, error);
    changes.push(...data.changes);
    if (!data.has_more) return { changes, cursor: data.cursor };
    if (data.cursor === since) throw new Error(`GET /changes: has_more with a cursor that did not advance (${since})`);
    since = data.cursor;
  }
}

/**
 * Applies `changes` (from `sync`), in order, to a map of the user's live
 * tasks by id: an `"upsert"` sets the task, a `"trash"` or `"delete"` removes
 * it (list the trash with `GET /api/{user_id}/trash`). Changes `tasks` in
 * place and returns it; for React state, pass a copy:
 * `setTasks((prev) => applyChanges(new Map(prev), changes))`.
 */
export function applyChanges(tasks: Map<number, Task>, changes: readonly Change[]): Map<number, Task> {
  for (const { op, task_id, task } of changes) {
    if (op === "upsert" && task) tasks.set(task_id, task);
    else tasks.delete(task_id);
  }
  return tasks;
}

export interface SubscribeOptions {
  /**
   * Where to start: the `cursor` of your last `sync` (or the last `cursor`
   * `onChange` got). The stream first replays every change after it, then
   * goes live. Without it the stream starts with the changes made from now
   * on, and a reconnect before the first change can miss changes: sync
   * first and pass its cursor.
   */
  since?: string;
  /**
   * Called with each change, in order, and the cursor just after it: apply
   * the change (`applyChanges(tasks, [change])`) and store the cursor with
   * your copy, as you would `sync`'s. May return a promise: the next change
   * waits for it. If it throws (or rejects), `subscribe` stops and rejects
   * with that error.
   */
  onChange: (change: Change, cursor: string) => void | Promise<void>;
  /** Called each time the stream is open (at first, and after each reconnect): the server now sends every new change. */
  onOpen?: () => void;
  /**
   * Called when a connection fails with an error `subscribe` retries (a
   * network error, a 5xx): it reconnects after a backoff (1 s doubling to
   * 30 s, `Retry-After` if the server sent one). E.g. to show "offline".
   */
  onError?: (error: unknown) => void;
  /** Stops the subscription: the stream closes and the promise resolves. */
  signal?: AbortSignal;
}

/** A failure `subscribe` does not retry. */
class Fatal {
  constructor(readonly error: unknown) {}
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
    if (signal.aborted) done();
  });
}

/** A stream open at least this long was healthy: when it ends, reconnect at once. */
const HEALTHY_MS = 1_000;
const MAX_BACKOFF_MS = 30_000;

/**
 * Live updates: streams the user's changes (`GET /api/{user_id}/events`,
 * Server-Sent Events) to `onChange` as they happen, in order, each with the
 * cursor after it, until `signal` aborts. Like `sync`, it delivers each
 * task at its latest state: changes to one task made faster than the
 * stream reads them arrive as one (the last), never out of order and never
 * lost. It takes the same client as
 * `sync` and, like every request of that client, asks `getToken` for the
 * token at each (re)connect.
 *
 * It keeps the stream open: when the server ends it (the token expired) it
 * reconnects at once with a fresh token; after a network error or a 5xx it
 * calls `onError` and reconnects after a backoff. Each reconnect resumes
 * after the last change received (`Last-Event-ID`), so no change is missed
 * or delivered twice.
 *
 * The promise resolves when `signal` aborts, and rejects (the stream
 * closed) with `CursorExpiredError` when `since` is too old (410): run a
 * full `sync(api, userId)` and subscribe again with its cursor; with a
 * `ProblemError` for any other 4xx (401 no or bad token, 403 another user's
 * id, 422 a malformed `since`, 429 too many streams open for this user;
 * a 429 over the rate limit is retried after its `Retry-After`);
 * or with what `onChange` threw.
 *
 * ```ts
 * // `tasks` and `cursor` as in the `sync` example.
 * function live(signal: AbortSignal): Promise<void> {
 *   return subscribe(api, userId, {
 *     since: cursor,
 *     signal,
 *     onChange(change, next) {
 *       applyChanges(tasks, [change]);
 *       cursor = next; // persist it with the tasks
 *     },
 *   }).catch(async (error) => {
 *     if (!(error instanceof CursorExpiredError)) throw error;
 *     const result = await sync(api, userId); // too old: start over
 *     tasks = applyChanges(new Map(), result.changes);
 *     cursor = result.cursor;
 *     return live(signal);
 *   });
 * }
 *
 * const stop = new AbortController();
 * void live(stop.signal);
 * stop.abort(); // later: closes the stream (e.g. in a React effect's cleanup)
 * ```
 */
export async function subscribe(
  client: TodoClient,
  userId: string,
  { since, onChange, onOpen, onError, signal }: SubscribeOptions,
): Promise<void> {
  // Aborted by the caller's signal, or by us on the way out: closes the stream.
  const controller = new AbortController();
  const abort = () => controller.abort();
  signal?.addEventListener("abort", abort);
  if (signal?.aborted) abort();
  let lastEventId = since;
  let failures = 0;
  try {
    while (!controller.signal.aborted) {
      let openedAt: number | undefined;
      let failure: unknown;
      let retryAfterMs: number | undefined;
      try {
        const { data: body, error, response } = await client.GET("/api/{user_id}/events", {
          params: {
            path: { user_id: userId },
            header: lastEventId === undefined ? undefined : { "Last-Event-ID": lastEventId },
          },
          headers: { Accept: "text/event-stream" },
          parseAs: "stream",
          signal: controller.signal,
        });
        if (!response.ok) {
          const problem = problemError(response, error);
          const retryAfter = Number(response.headers.get("Retry-After"));
          if (retryAfter > 0) retryAfterMs = Math.min(retryAfter * 1000, MAX_BACKOFF_MS);
          const retryable = response.status >= 500 || problem.problem?.type === RATE_LIMITED;
          throw retryable ? problem : new Fatal(problem);
        }
        const type = response.headers.get("Content-Type") ?? "";
        if (!body || !type.startsWith("text/event-stream")) {
          await body?.cancel();
          throw new Fatal(new Error(`GET /events: expected a text/event-stream, got ${response.status} ${type}`));
        }
        openedAt = Date.now();
        onOpen?.();
        await readEvents(body, controller.signal, async ({ event, id, data }) => {
          // Every change event carries its cursor as id; skip anything else.
          if (event !== "change" || !id) return;
          try {
            await onChange(JSON.parse(data) as Change, id);
          } catch (error) {
            throw new Fatal(error);
          }
          lastEventId = id;
        });
        // The server ended the stream (the token expired, or it is shutting down): reconnect.
      } catch (error) {
        if (error instanceof Fatal) throw error.error;
        if (controller.signal.aborted) return;
        failure = error;
      }
      const healthy = openedAt !== undefined && Date.now() - openedAt >= HEALTHY_MS;
      if (healthy) failures = 0;
      if (failure === undefined && healthy) continue;
      if (failure !== undefined) onError?.(failure);
      // 1 s, 2 s, 4 s ... up to 30 s, each 50 to 100 % of that (jitter).
      const backoff = Math.min(1_000 * 2 ** failures++, MAX_BACKOFF_MS) * (0.5 + Math.random() / 2);
      await pause(retryAfterMs ?? backoff, controller.signal);
    }
  } finally {
    signal?.removeEventListener("abort", abort);
    controller.abort();
  }
}

/** The problem `type` of a 429 over the rate limit (rather than too many streams). */
const RATE_LIMITED = "/problems/rate-limited";

/**
 * Reads a `text/event-stream` body to its end, or until `signal` aborts,
 * handing each event to `onEvent` (awaited, in order).
 */
async function readEvents(
  body: ReadableStream<Uint8Array>,
  signal: AbortSignal,
  onEvent: (message: EventSourceMessage) => Promise<void>,
): Promise<void> {
  const parsed: EventSourceMessage[] = [];
  const parse = getLines(getMessages(() => {}, () => {}, (message) => parsed.push(message)));
  const reader = body.getReader();
  // Aborting the fetch does not always end a read already waiting on the
  // body (Node 20's fetch left `subscribe` hanging about one run in three):
  // cancelling the reader does, and closes the connection.
  const cancel = () => void reader.cancel().catch(() => {});
  signal.addEventListener("abort", cancel);
  if (signal.aborted) cancel();
  try {
    while (!signal.aborted) {
      const { done, value } = await reader.read();
      if (done) return;
      parse(value);
      for (const message of parsed.splice(0)) await onEvent(message);
    }
  } finally {
    signal.removeEventListener("abort", cancel);
  }
}
