use poem::web::Data;
use poem_openapi::{OpenApi, payload::Json};

use super::{ApiTags, schema::Health};
use crate::{api::problems::DatabaseUnavailable, state::AppState};

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
    /// `200` when the service can commit a write to its database, `503`
    /// when it cannot (unreachable, disk full, read-only). Needs no token.
    #[oai(path = "/health", method = "get", operation_id = "health")]
    async fn health(&self, state: Data<&AppState>) -> Result<Json<Health>, DatabaseUnavailable> {
        state
            .write_health
            .probe(&state.db.writer)
            .await
            .map_err(DatabaseUnavailable)?;
        Ok(Json(Health {
            status: "ok".into(),
            database: "ok".into(),
        }))
    }
}
