use poem::web::Data;
use poem_openapi::{
    ApiResponse, OpenApi,
    param::{Header, Path, Query},
    payload::Json,
};

use super::{
    ApiTags,
    conditions::EntityTags,
    schema::{Task, TaskPage},
    security::BearerAuth,
    tasks::OneTask,
};
use crate::{
    error::ApiError,
    state::AppState,
    tasks::{self, IfVersion, Offset, PageSize},
};

pub struct TrashApi;

#[derive(ApiResponse)]
enum DeletedForGood {
    /// Deleted for good, with its tag links; the change feed reports a
    /// `delete`.
    #[oai(status = 204)]
    Deleted,
}

#[OpenApi(
    tag = "ApiTags::Trash",
    response_header(
        name = "X-Request-Id",
        ty = "String",
        description = "The request's `X-Request-Id` if it sent a usable one, else a new id; quote it when reporting a problem."
    )
)]
impl TrashApi {
    /// List the trash
    ///
    /// One page of your trashed tasks, most recently trashed first; each
    /// has `deleted_at` set. `total` counts the whole trash.
    #[oai(
        path = "/api/:user_id/trash",
        method = "get",
        operation_id = "listTrash"
    )]
    async fn list_trash(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Your user id (the token's `sub`).
        user_id: Path<String>,
        /// Page size, 1 to 100.
        #[oai(default)]
        limit: Query<PageSize>,
        /// Trashed tasks to skip, at most 2^53 - 1.
        #[oai(default)]
        offset: Query<Offset>,
    ) -> Result<Json<TaskPage>, ApiError> {
        let owner = auth.owner(&state, &user_id).await?;
        let (limit, offset) = (limit.0.0, offset.0.0);
        let (items, total) = tasks::list_trash(&state.db.reader, &owner, limit, offset).await?;
        Ok(Json(TaskPage {
            items: items.into_iter().map(Task::from).collect(),
            total,
            limit,
            offset,
        }))
    }

    /// Restore a task
    ///
    /// Takes the task out of the trash, live again with its tags
    /// (`deleted_at` back to `null`, `version` + 1).
    #[oai(
        path = "/api/:user_id/trash/:task_id/restore",
        method = "post",
        operation_id = "restoreTask"
    )]
    async fn restore_task(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Your user id (the token's `sub`).
        user_id: Path<String>,
        /// The trashed task's id.
        task_id: Path<i64>,
        /// Restore the task only at one of these versions (`ETag`s, e.g.
        /// `"7"`; weak tags never match), else `412`; `*` or absent: any.
        #[oai(name = "If-Match")]
        if_match: Header<Option<EntityTags>>,
    ) -> Result<OneTask, ApiError> {
        let owner = auth.owner(&state, &user_id).await?;
        let expected = if_match
            .0
            .as_ref()
            .map_or(IfVersion::Any, EntityTags::for_write);
        let task = tasks::restore(&state.db.writer, &owner, task_id.0, &expected).await?;
        Ok(task.into())
    }

    /// Delete a trashed task for good
    ///
    /// Only a task in the trash can be deleted for good; a live task answers
    /// `404` (move it to the trash first).
    #[oai(
        path = "/api/:user_id/trash/:task_id",
        method = "delete",
        operation_id = "deleteTrashedTask"
    )]
    async fn delete_trashed_task(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Your user id (the token's `sub`).
        user_id: Path<String>,
        /// The trashed task's id.
        task_id: Path<i64>,
    ) -> Result<DeletedForGood, ApiError> {
        let owner = auth.owner(&state, &user_id).await?;
        tasks::delete_trashed(&state.db.writer, &owner, task_id.0).await?;
        Ok(DeletedForGood::Deleted)
    }

    /// Empty the trash
    ///
    /// Deletes every trashed task for good (an empty trash too answers
    /// `204`).
    #[oai(
        path = "/api/:user_id/trash",
        method = "delete",
        operation_id = "emptyTrash"
    )]
    async fn empty_trash(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Your user id (the token's `sub`).
        user_id: Path<String>,
    ) -> Result<DeletedForGood, ApiError> {
        let owner = auth.owner(&state, &user_id).await?;
        tasks::empty_trash(&state.db.writer, &owner).await?;
        Ok(DeletedForGood::Deleted)
    }
}
