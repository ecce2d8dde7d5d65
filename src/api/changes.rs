use poem::web::Data;
use poem_openapi::{
    OpenApi,
    param::{Path, Query},
    payload::Json,
};

use super::{
    ApiTags,
    schema::{Change, ChangePage},
    security::BearerAuth,
};
use crate::{
    error::ApiError,
    state::AppState,
    tasks::{self, ChangeCursor, ChangeLimit},
};

pub struct ChangesApi;

#[OpenApi(
    tag = "ApiTags::Sync",
    response_header(
        name = "X-Request-Id",
        ty = "String",
        description = "The request's `X-Request-Id` if it sent a usable one, else a new id; quote it when reporting a problem."
    )
)]
impl ChangesApi {
    /// List changes since a cursor
    ///
    /// What changed in your tasks after `since`, oldest first, each task
    /// once at its latest state: `upsert` (created, changed or restored),
    /// `trash` or `delete` (gone for good). Without `since`, every live and
    /// trashed task (a full sync). Request again with `since=<cursor>`
    /// while `has_more`, then keep `cursor` for the next sync. A cursor
    /// older than what the server remembers answers `410`: start over
    /// without `since`.
    #[oai(
        path = "/api/:user_id/changes",
        method = "get",
        operation_id = "listChanges"
    )]
    async fn list_changes(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Your user id (the token's `sub`).
        user_id: Path<String>,
        /// The `cursor` of the previous response; absent for a full sync.
        since: Query<Option<ChangeCursor>>,
        /// Most changes in one response, 1 to 1000.
        #[oai(default)]
        limit: Query<ChangeLimit>,
    ) -> Result<Json<ChangePage>, ApiError> {
        let owner = auth.owner(&state, &user_id).await?;
        let since = since.0.map(|cursor| cursor.0);
        let page = tasks::changes(&state.db.reader, &owner, since, limit.0.0).await?;
        Ok(Json(ChangePage {
            changes: page.changes.into_iter().map(Change::from).collect(),
            cursor: ChangeCursor(page.through).to_string(),
            has_more: page.has_more,
        }))
    }
}
