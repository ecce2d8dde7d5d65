use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use poem::web::Data;
use poem_openapi::{
    ApiResponse, OpenApi,
    param::{Header, Path, Query},
    payload::Json,
};

use super::{
    ApiTags,
    body::JsonBody,
    conditions::{EntityTags, etag, write_condition},
    idempotency::{IdempotencyKeyHeader, Replayable, replayed_body, run_once},
    schema::{NewTask, Task, TaskPage, TaskPatch, TaskReplacement, TaskStats, Timestamp},
    security::BearerAuth,
};
use crate::{
    auth::Owner,
    error::ApiError,
    idempotency::{self, Remembered},
    state::AppState,
    tasks::{
        self, Offset, PageSize, Priority, SearchText, SortField, SortOrder, StatusFilter,
        TagFilter, TaskChanges, TaskDraft, TaskFilter, TaskWithTags,
    },
};

pub struct TasksApi;

/// Characters a user id must not carry raw into a `Location` path segment.
const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'`')
    .add(b'{')
    .add(b'}');

#[derive(ApiResponse)]
enum CreatedTask {
    /// The task was created.
    #[oai(status = 201)]
    Created(
        Json<Task>,
        /// Path of the new task: `/api/{user_id}/tasks/{id}`.
        #[oai(header = "Location")]
        String,
        /// The task's version, quoted: send it back in `If-Match`.
        #[oai(header = "ETag")]
        String,
        /// `true` when this is the response an earlier request with the same
        /// `Idempotency-Key` got, answered again.
        #[oai(header = "Idempotent-Replayed")]
        Option<bool>,
    ),
}

impl CreatedTask {
    fn new(owner: &Owner, task: TaskWithTags) -> Self {
        let tag = etag(task.task.version);
        let location = format!("{}/{}", tasks_path(owner), task.task.id);
        Self::Created(Json(task.into()), location, tag, None)
    }
}

impl Replayable for CreatedTask {
    fn remembered(&self) -> Remembered {
        let Self::Created(Json(task), location, etag, _) = self;
        Remembered {
            status: 201,
            body: poem_openapi::types::ToJSON::to_json_string(task),
            location: Some(location.clone()),
            etag: Some(etag.clone()),
        }
    }

    fn replayed(remembered: Remembered) -> Result<Self, ApiError> {
        let task = replayed_body(&remembered)?;
        let location = remembered.location.unwrap_or_default();
        let etag = remembered.etag.unwrap_or_default();
        Ok(Self::Created(Json(task), location, etag, Some(true)))
    }
}

/// `/api/{user_id}/tasks`, the user id encoded as a path segment.
fn tasks_path(owner: &Owner) -> String {
    format!(
        "/api/{}/tasks",
        utf8_percent_encode(owner.id(), PATH_SEGMENT)
    )
}

#[derive(ApiResponse)]
enum ToggledTask {
    /// The task as it now is.
    #[oai(status = 200)]
    Ok(
        Json<Task>,
        /// The task's version, quoted: send it back in `If-Match`.
        #[oai(header = "ETag")]
        String,
        /// `true` when this is the response an earlier request with the same
        /// `Idempotency-Key` got, answered again.
        #[oai(header = "Idempotent-Replayed")]
        Option<bool>,
    ),
}

impl ToggledTask {
    fn new(task: TaskWithTags) -> Self {
        let tag = etag(task.task.version);
        Self::Ok(Json(task.into()), tag, None)
    }
}

impl Replayable for ToggledTask {
    fn remembered(&self) -> Remembered {
        let Self::Ok(Json(task), etag, _) = self;
        Remembered {
            status: 200,
            body: poem_openapi::types::ToJSON::to_json_string(task),
            location: None,
            etag: Some(etag.clone()),
        }
    }

    fn replayed(remembered: Remembered) -> Result<Self, ApiError> {
        let task = replayed_body(&remembered)?;
        Ok(Self::Ok(
            Json(task),
            remembered.etag.unwrap_or_default(),
            Some(true),
        ))
    }
}

#[derive(ApiResponse)]
pub(super) enum OneTask {
    /// The task as it now is.
    #[oai(status = 200)]
    Ok(
        Json<Task>,
        /// The task's version, quoted: send it back in `If-Match`.
        #[oai(header = "ETag")]
        String,
    ),
}

impl From<TaskWithTags> for OneTask {
    fn from(task: TaskWithTags) -> Self {
        let tag = etag(task.task.version);
        Self::Ok(Json(task.into()), tag)
    }
}

#[derive(ApiResponse)]
enum ReadTask {
    /// The task.
    #[oai(status = 200)]
    Ok(
        Json<Task>,
        /// The task's version, quoted: send it back in `If-Match`, or in
        /// `If-None-Match` to read it again only if it changed.
        #[oai(header = "ETag")]
        String,
    ),
    /// The task is still at the version `If-None-Match` named; no body.
    #[oai(status = 304)]
    NotModified(
        /// The task's version, quoted.
        #[oai(header = "ETag")]
        String,
    ),
}

#[derive(ApiResponse)]
enum TrashedTask {
    /// The task is in the trash: gone from everything but `listTrash`,
    /// until restored or deleted for good.
    #[oai(status = 204)]
    Trashed,
}

/// What a valid value of each query parameter looks like, for the
/// 422 that names it (the framework's own messages quote types and regexes),
/// from the parameter's type. `limit` and `offset`, whose bounds differ
/// between operations, answer with their own type's rule.
pub fn query_rule(parameter: &str) -> Option<String> {
    Some(match parameter {
        "status" => tasks::one_of::<StatusFilter>(),
        "priority" => tasks::one_of::<Priority>(),
        "sort" => tasks::one_of::<SortField>(),
        "order" => tasks::one_of::<SortOrder>(),
        "tag" => TagFilter::rule(),
        "q" => SearchText::rule(),
        "due_before" | "due_after" => tasks::TIMESTAMP_RULE.into(),
        "since" => tasks::ChangeCursor::rule().into(),
        _ => return None,
    })
}

#[OpenApi(
    tag = "ApiTags::Tasks",
    response_header(
        name = "X-Request-Id",
        ty = "String",
        description = "The request's `X-Request-Id` if it sent a usable one, else a new id; quote it when reporting a problem."
    )
)]
impl TasksApi {
    /// List tasks
    ///
    /// One page of your tasks, filtered and sorted; `total` counts every
    /// matching task so you can page with `limit` and `offset`.
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/api/:user_id/tasks",
        method = "get",
        operation_id = "listTasks"
    )]
    async fn list_tasks(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Your user id (the token's `sub`).
        user_id: Path<String>,
        /// `pending` or `completed` tasks only; `all` by default.
        #[oai(default)]
        status: Query<StatusFilter>,
        /// Only tasks of this priority.
        priority: Query<Option<Priority>>,
        /// Only tasks carrying this tag (compared trimmed and lower-cased);
        /// empty means any.
        tag: Query<Option<TagFilter>>,
        /// Case-insensitive text to find in title or description; `%`, `_`
        /// and `\` match literally.
        q: Query<Option<SearchText>>,
        /// Only tasks due strictly before this instant.
        due_before: Query<Option<Timestamp>>,
        /// Only tasks due at or after this instant.
        due_after: Query<Option<Timestamp>>,
        /// Sort field; ties are broken by `id` in the same direction.
        #[oai(default)]
        sort: Query<SortField>,
        /// Sort direction.
        #[oai(default)]
        order: Query<SortOrder>,
        /// Page size, 1 to 100.
        #[oai(default)]
        limit: Query<PageSize>,
        /// Matching tasks to skip, at most 2^53 - 1 (the largest integer a
        /// JavaScript number holds exactly).
        #[oai(default)]
        offset: Query<Offset>,
    ) -> Result<Json<TaskPage>, ApiError> {
        let owner = auth.owner(&state, &user_id).await?;
        let filter = TaskFilter {
            status: status.0,
            priority: priority.0,
            due_before: due_before.0.map(|at| at.0),
            due_after: due_after.0.map(|at| at.0),
            sort: sort.0,
            order: order.0,
            limit: limit.0.0,
            offset: offset.0.0,
            tag: tag.0.and_then(TagFilter::into_name),
            q: q.0.and_then(SearchText::into_text),
        };
        let (items, total) = tasks::list(&state.db.reader, &owner, &filter).await?;
        Ok(Json(TaskPage {
            items: items.into_iter().map(Task::from).collect(),
            total,
            limit: filter.limit,
            offset: filter.offset,
        }))
    }

    /// Create a task
    ///
    /// Only `title` is required. Answers `201` with the task and its
    /// `Location`.
    #[oai(
        path = "/api/:user_id/tasks",
        method = "post",
        operation_id = "createTask"
    )]
    async fn create_task(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Your user id (the token's `sub`).
        user_id: Path<String>,
        body: JsonBody<NewTask>,
        /// Makes retries safe: send a new random key (a UUID) with each new
        /// request and the same key with its retries. A retry gets the first
        /// response again (with `Idempotent-Replayed: true`) instead of
        /// writing twice; keys are per user and remembered for
        /// `IDEMPOTENCY_TTL` (24 hours by default).
        #[oai(name = "Idempotency-Key")]
        idempotency_key: IdempotencyKeyHeader,
    ) -> Result<CreatedTask, ApiError> {
        let owner = auth.owner(&state, &user_id).await?;
        let Some(key) = idempotency_key.0 else {
            let draft = TaskDraft::from(body.read()?);
            let task = tasks::create(&state.db.writer, &owner, draft).await?;
            return Ok(CreatedTask::new(&owner, task));
        };
        let fingerprint = idempotency::fingerprint("POST", &tasks_path(&owner), Some(body.json()));
        let create = async |txn: &_| {
            let draft = TaskDraft::from(body.read()?);
            let task = tasks::create_in(txn, &owner, draft).await?;
            Ok(CreatedTask::new(&owner, task))
        };
        run_once(&state, &owner, &key, fingerprint, create).await
    }

    /// Get a task
    ///
    /// One of your tasks by id. Another user's task id answers `404`, exactly
    /// like an id that does not exist.
    #[oai(
        path = "/api/:user_id/tasks/:task_id",
        method = "get",
        operation_id = "getTask"
    )]
    async fn get_task(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Your user id (the token's `sub`).
        user_id: Path<String>,
        /// The task's id.
        task_id: Path<i64>,
        /// `304` without a body if the task is still at one of these
        /// versions (`ETag`s; `W/"7"` matches `"7"`).
        #[oai(name = "If-None-Match")]
        if_none_match: Header<Option<EntityTags>>,
    ) -> Result<ReadTask, ApiError> {
        let owner = auth.owner(&state, &user_id).await?;
        let task = tasks::get(&state.db.reader, &owner, task_id.0).await?;
        let tag = etag(task.task.version);
        Ok(match if_none_match.0 {
            Some(tags) if tags.matches_weakly(task.task.version) => ReadTask::NotModified(tag),
            _ => ReadTask::Ok(Json(task.into()), tag),
        })
    }

    /// Replace a task
    ///
    /// Sets every field: absent optional fields go back to their defaults
    /// (no description, `medium`, no due date, no tags); `completed` is kept
    /// when absent.
    #[oai(
        path = "/api/:user_id/tasks/:task_id",
        method = "put",
        operation_id = "replaceTask"
    )]
    async fn replace_task(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Your user id (the token's `sub`).
        user_id: Path<String>,
        /// The task's id.
        task_id: Path<i64>,
        body: JsonBody<TaskReplacement>,
        /// Change the task only at one of these versions (`ETag`s, e.g.
        /// `"7"`; weak tags never match), else `412`; `*` or absent: any.
        #[oai(name = "If-Match")]
        if_match: Header<Option<EntityTags>>,
    ) -> Result<OneTask, ApiError> {
        let owner = auth.owner(&state, &user_id).await?;
        let changes = TaskChanges::from(body.read()?);
        let expected = write_condition(&state, if_match.0.as_ref())?;
        let task = tasks::update(&state.db.writer, &owner, task_id.0, &expected, changes).await?;
        Ok(task.into())
    }

    /// Update some fields of a task
    ///
    /// Send only what changes: absent fields are unchanged, `null` clears
    /// `description` or `due_date`.
    #[oai(
        path = "/api/:user_id/tasks/:task_id",
        method = "patch",
        operation_id = "updateTask"
    )]
    async fn update_task(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Your user id (the token's `sub`).
        user_id: Path<String>,
        /// The task's id.
        task_id: Path<i64>,
        body: JsonBody<TaskPatch>,
        /// Change the task only at one of these versions (`ETag`s, e.g.
        /// `"7"`; weak tags never match), else `412`; `*` or absent: any.
        #[oai(name = "If-Match")]
        if_match: Header<Option<EntityTags>>,
    ) -> Result<OneTask, ApiError> {
        let owner = auth.owner(&state, &user_id).await?;
        let changes = TaskChanges::from(body.read()?);
        let expected = write_condition(&state, if_match.0.as_ref())?;
        let task = tasks::update(&state.db.writer, &owner, task_id.0, &expected, changes).await?;
        Ok(task.into())
    }

    /// Delete a task (to the trash)
    ///
    /// Moves the task to the trash and answers `204` with no body. From then
    /// on it answers `404` here and is left out of lists, tags and stats;
    /// `restoreTask` brings it back, and it is deleted for good
    /// `TRASH_RETENTION` (30 days by default) after it was trashed.
    #[oai(
        path = "/api/:user_id/tasks/:task_id",
        method = "delete",
        operation_id = "deleteTask"
    )]
    async fn delete_task(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Your user id (the token's `sub`).
        user_id: Path<String>,
        /// The task's id.
        task_id: Path<i64>,
        /// Change the task only at one of these versions (`ETag`s, e.g.
        /// `"7"`; weak tags never match), else `412`; `*` or absent: any.
        #[oai(name = "If-Match")]
        if_match: Header<Option<EntityTags>>,
    ) -> Result<TrashedTask, ApiError> {
        let owner = auth.owner(&state, &user_id).await?;
        let expected = write_condition(&state, if_match.0.as_ref())?;
        tasks::trash(&state.db.writer, &owner, task_id.0, &expected).await?;
        Ok(TrashedTask::Trashed)
    }

    /// Toggle completion
    ///
    /// Flips `completed`; completing sets `completed_at`, reopening clears it.
    #[oai(
        path = "/api/:user_id/tasks/:task_id/complete",
        method = "patch",
        operation_id = "toggleTask"
    )]
    async fn toggle_task(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Your user id (the token's `sub`).
        user_id: Path<String>,
        /// The task's id.
        task_id: Path<i64>,
        /// Change the task only at one of these versions (`ETag`s, e.g.
        /// `"7"`; weak tags never match), else `412`; `*` or absent: any.
        #[oai(name = "If-Match")]
        if_match: Header<Option<EntityTags>>,
        /// Makes retries safe: send a new random key (a UUID) with each new
        /// request and the same key with its retries. A retry gets the first
        /// response again (with `Idempotent-Replayed: true`) instead of
        /// writing twice; keys are per user and remembered for
        /// `IDEMPOTENCY_TTL` (24 hours by default).
        #[oai(name = "Idempotency-Key")]
        idempotency_key: IdempotencyKeyHeader,
    ) -> Result<ToggledTask, ApiError> {
        let owner = auth.owner(&state, &user_id).await?;
        let expected = write_condition(&state, if_match.0.as_ref())?;
        let Some(key) = idempotency_key.0 else {
            let task = tasks::toggle(&state.db.writer, &owner, task_id.0, &expected).await?;
            return Ok(ToggledTask::new(task));
        };
        let path = format!("{}/{}/complete", tasks_path(&owner), task_id.0);
        let fingerprint = idempotency::fingerprint("PATCH", &path, None);
        let toggle = async |txn: &_| {
            let task = tasks::toggle(txn, &owner, task_id.0, &expected).await?;
            Ok(ToggledTask::new(task))
        };
        run_once(&state, &owner, &key, fingerprint, toggle).await
    }

    /// Task counts
    ///
    /// Totals for a dashboard: all, completed, pending, and overdue (pending
    /// with a due date in the past).
    #[oai(
        path = "/api/:user_id/stats",
        method = "get",
        operation_id = "getStats"
    )]
    async fn get_stats(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Your user id (the token's `sub`).
        user_id: Path<String>,
    ) -> Result<Json<TaskStats>, ApiError> {
        let owner = auth.owner(&state, &user_id).await?;
        Ok(Json(tasks::stats(&state.db.reader, &owner).await?.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::{
        DEFAULT_PAGE_SIZE, MAX_OFFSET, MAX_PAGE_SIZE, MAX_SEARCH_CHARS, MAX_TAG_CHARS,
    };

    /// The bounds the document publishes are the constants the checks use.
    #[test]
    fn list_parameter_bounds_in_the_spec_are_the_constants() {
        let spec: serde_json::Value =
            serde_json::from_str(&super::super::service().spec()).expect("valid JSON");
        let parameters = spec["paths"]["/api/{user_id}/tasks"]["get"]["parameters"]
            .as_array()
            .expect("listTasks parameters");
        let schema = |name: &str| {
            parameters
                .iter()
                .find(|p| p["name"] == name)
                .map(|p| p["schema"].clone())
                .unwrap_or_default()
        };
        // Bounds are published as floats; these are exact in an f64.
        assert_eq!(
            schema("limit")["maximum"].as_f64(),
            Some(MAX_PAGE_SIZE as f64)
        );
        assert_eq!(schema("limit")["default"], DEFAULT_PAGE_SIZE);
        assert_eq!(
            schema("offset")["maximum"].as_f64(),
            Some(MAX_OFFSET as f64)
        );
        assert_eq!(schema("q")["maxLength"], MAX_SEARCH_CHARS);
        assert_eq!(
            schema("tag")["pattern"],
            tasks::trimmed_text_pattern(MAX_TAG_CHARS, true)
        );
    }

    #[test]
    fn the_tag_list_bound_in_the_spec_is_the_constant() {
        let spec: serde_json::Value =
            serde_json::from_str(&super::super::service().spec()).expect("valid JSON");
        for body in ["NewTask", "TaskPatch"] {
            let tags = &spec["components"]["schemas"][body]["properties"]["tags"];
            assert_eq!(tags["maxItems"], tasks::MAX_TAGS, "{body}");
        }
    }

    #[test]
    fn enumeration_rules_list_the_published_values() {
        assert_eq!(
            query_rule("priority").as_deref(),
            Some("must be one of `low`, `medium`, `high`")
        );
        assert_eq!(
            query_rule("order").as_deref(),
            Some("must be `asc` or `desc`")
        );
        assert_eq!(
            query_rule("sort").as_deref(),
            Some("must be one of `created_at`, `updated_at`, `title`, `due_date`, `priority`")
        );
        assert_eq!(
            query_rule("status").as_deref(),
            Some("must be one of `all`, `pending`, `completed`")
        );
    }
}
