use poem::web::Data;
use poem_openapi::{OpenApi, param::Path, payload::Json};

use super::{ApiTags, schema::TagCount, security::BearerAuth};
use crate::{error::ApiError, state::AppState, tasks};

pub struct TagsApi;

#[OpenApi(
    tag = "ApiTags::Tags",
    response_header(
        name = "X-Request-Id",
        ty = "String",
        description = "The request's `X-Request-Id` if it sent a usable one, else a new id; quote it when reporting a problem."
    )
)]
impl TagsApi {
    /// List tags
    ///
    /// Every tag on at least one of your tasks, with its task count; most
    /// used first, then by name.
    #[oai(path = "/api/:user_id/tags", method = "get", operation_id = "listTags")]
    async fn list_tags(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Your user id (the token's `sub`).
        user_id: Path<String>,
    ) -> Result<Json<Vec<TagCount>>, ApiError> {
        let owner = auth.owner(&state, &user_id).await?;
        let tags = tasks::tag_counts(&state.db.reader, &owner).await?;
        Ok(Json(tags.into_iter().map(TagCount::from).collect()))
    }
}
