use sea_orm::entity::prelude::*;

/// A user's number of tasks and of completed ones, kept by database triggers
/// on `tasks` (see the `task_counts` migration); never written by the service.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "task_counts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    pub total: i64,
    pub completed: i64,
}

impl ActiveModelBehavior for ActiveModel {}
