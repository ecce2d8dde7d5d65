// Compile-time checks of the generated types and the client's signatures.
// Never run: `npm run typecheck` (part of `npm test`) fails if any of this stops
// compiling, or if an `@ts-expect-error` line starts compiling.
import type { FetchResponse } from "openapi-fetch";

import type {
  Change,
  ListTasksQuery,
  NewTask,
  Priority,
  Problem,
  SortField,
  StatusFilter,
  Task,
  TaskPage,
  TaskPatch,
  TodoClient,
  subscribe,
  SubscribeOptions,
  sync,
  SyncResult,
} from "../src/index.js";

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function expectType<T extends true>(_: T): void {}

expectType<Equal<Priority, "low" | "medium" | "high">>(true);
expectType<Equal<Task["priority"], Priority>>(true);
expectType<Equal<StatusFilter, "all" | "pending" | "completed">>(true);
expectType<Equal<SortField, "created_at" | "updated_at" | "title" | "due_date" | "priority">>(true);
expectType<Equal<NonNullable<ListTasksQuery["order"]>, "asc" | "desc">>(true);
expectType<Equal<Task["id"], number>>(true);
expectType<Equal<Task["tags"], string[]>>(true);
expectType<Equal<TaskPage["items"], Task[]>>(true);
expectType<Equal<Change["op"], "upsert" | "trash" | "delete">>(true);
expectType<Equal<Change["task"], Task | null>>(true);
expectType<Equal<Awaited<ReturnType<typeof sync>>, SyncResult>>(true);
expectType<Equal<ReturnType<typeof subscribe>, Promise<void>>>(true);
expectType<Equal<Parameters<SubscribeOptions["onChange"]>, [change: Change, cursor: string]>>(true);

export async function signatures(api: TodoClient, user_id: string, task_id: number): Promise<void> {
  // Success data and error are typed by the response.
  const got = await api.GET("/api/{user_id}/tasks/{task_id}", { params: { path: { user_id, task_id } } });
  if (got.data) expectType<Equal<typeof got.data, Task>>(true);
  if (got.error) expectType<Equal<typeof got.error, Problem>>(true);

  const page = await api.GET("/api/{user_id}/tasks", { params: { path: { user_id }, query: { status: "pending" } } });
  if (page.data) expectType<Equal<typeof page.data, TaskPage>>(true);

  const deleted: FetchResponse<any, any, any> = await api.DELETE("/api/{user_id}/tasks/{task_id}", {
    params: { path: { user_id, task_id } },
  });
  void deleted;

  // PATCH bodies accept null to clear nullable fields.
  const patch: TaskPatch = { description: null, due_date: null };
  await api.PATCH("/api/{user_id}/tasks/{task_id}", { params: { path: { user_id, task_id } }, body: patch });

  // @ts-expect-error: title is required on create
  const untitled: NewTask = { description: "no title" };
  void untitled;

  // @ts-expect-error: not a priority
  await api.POST("/api/{user_id}/tasks", { params: { path: { user_id } }, body: { title: "t", priority: "urgent" } });

  // @ts-expect-error: user_id path parameter missing
  await api.GET("/api/{user_id}/tasks", { params: { path: {} } });

  // @ts-expect-error: task_id is a number
  await api.GET("/api/{user_id}/tasks/{task_id}", { params: { path: { user_id, task_id: "1" } } });

  // @ts-expect-error: not a status filter
  await api.GET("/api/{user_id}/tasks", { params: { path: { user_id }, query: { status: "done" } } });

  // @ts-expect-error: no such path
  await api.GET("/api/{user_id}/todos", { params: { path: { user_id } } });

  // @ts-expect-error: subscribe needs onChange
  const silent: SubscribeOptions = { since: "AAAAAAAAAAE" };
  void silent;

  // @ts-expect-error: POST needs a body
  await api.POST("/api/{user_id}/tasks", { params: { path: { user_id } } });
}
