use sea_orm::entity::prelude::*;

/// The response a request with an `Idempotency-Key` got, remembered for the
/// key's retries until `expires_at`.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// SHA-256 (hex) of the request's method, path and JSON body.
    pub fingerprint: String,
    /// The HTTP status answered.
    pub status: i32,
    /// The JSON body answered (a task, or a problem document).
    pub body: String,
    pub location: Option<String>,
    pub etag: Option<String>,
    pub expires_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
