use poem::web::Data;
use poem_openapi::{OpenApi, payload::Json};

use super::{ApiTags, schema::Health};
use crate::{app::AppState, error::DatabaseUnavailable};

pub struct HealthApi;

#[OpenApi(
    tag = "ApiTags::Health",
    response_header(
        name = "X-Request-Id",
        ty = "String",
        description = "The request's `X-Request-Id` if it sent a usable one, else a new id; quote it when reporting a problem."
    )
)]
impl HealthApi {
    /// Health check
    ///
    /// `200` when the service and its database answer, `503` when the
    /// database does not. Needs no token.
    #[oai(path = "/health", method = "get", operation_id = "health")]
    async fn health(&self, state: Data<&AppState>) -> Result<Json<Health>, DatabaseUnavailable> {
        state.db.ping().await.map_err(DatabaseUnavailable)?;
        Ok(Json(Health {
            status: "ok".into(),
            database: "ok".into(),
        }))
    }
}
