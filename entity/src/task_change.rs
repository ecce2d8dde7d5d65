use sea_orm::entity::prelude::*;

/// The latest change of one task, for the change feed: written by database
/// triggers on `tasks` (see the `trash_and_changes` migration), never by
/// the service. Once the task is deleted for good the row is its tombstone
/// (`deleted_at` set), kept until `CHANGES_RETENTION` has passed.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "task_changes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub task_id: i64,
    /// The owner's change sequence number of the task's latest change.
    pub seq: i64,
    /// When the task was deleted for good, in Unix seconds; `None` while it
    /// exists (live or in the trash).
    pub deleted_at: Option<i64>,
}

impl ActiveModelBehavior for ActiveModel {}
