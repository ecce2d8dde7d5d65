use sea_orm::entity::prelude::*;

/// A task deleted for good, remembered for the change feed until
/// `CHANGES_RETENTION` has passed. Written by a database trigger on every
/// delete from `tasks`.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "task_tombstones")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    /// The owner's change sequence number of the deletion.
    #[sea_orm(primary_key, auto_increment = false)]
    pub change_seq: i64,
    pub task_id: i64,
    /// When the task was deleted, in Unix seconds.
    pub deleted_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
