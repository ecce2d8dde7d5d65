use sea_orm::entity::prelude::*;

/// The single row `/health` rewrites to prove the database still commits.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "write_probe")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    pub checked_at: DateTimeUtc,
    /// Written and cleared by the probe after a failed write, to prove that
    /// a write as large as a request's can commit again.
    pub filler: Option<Vec<u8>>,
}

impl ActiveModelBehavior for ActiveModel {}
