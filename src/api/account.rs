use poem::web::Data;
use poem_openapi::{OpenApi, param::Path, payload::Json};

use super::{ApiTags, schema::Me, security::BearerAuth};
use crate::{error::ApiError, state::AppState, users};

pub struct AccountApi;

#[OpenApi(
    tag = "ApiTags::Account",
    response_header(
        name = "X-Request-Id",
        ty = "String",
        description = "The request's `X-Request-Id` if it sent a usable one, else a new id; quote it when reporting a problem."
    )
)]
impl AccountApi {
    /// The signed-in user
    ///
    /// Id, email and name as taken from your token's claims, and when the
    /// API first saw you.
    #[oai(path = "/api/:user_id/me", method = "get", operation_id = "getMe")]
    async fn get_me(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Your user id (the token's `sub`).
        user_id: Path<String>,
    ) -> Result<Json<Me>, ApiError> {
        let owner = auth.owner(&state, &user_id).await?;
        let user = users::find(&state.db.reader, &owner)
            .await?
            .ok_or_else(|| ApiError::NotFound("no such user".into()))?;
        Ok(Json(user.into()))
    }
}
