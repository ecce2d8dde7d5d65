use sea_orm::entity::prelude::*;

/// Changes to a user's number of tasks and of completed ones, kept by
/// database triggers on `tasks` (see the `task_counts` migration) and never
/// written by the service. A user's counts are the sums over their slots.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "task_counts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub slot: i16,
    pub total: i64,
    pub completed: i64,
}

impl ActiveModelBehavior for ActiveModel {}
