use sea_orm::entity::prelude::*;

/// A user with open event streams on an instance (PostgreSQL only): the
/// numbering trigger `NOTIFY`s a user's changes only while such a row exists
/// (see the `event_listeners` migration).
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "event_listeners")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    /// The backend pid of the instance's `LISTEN` session: the row is stale
    /// once that session is gone.
    #[sea_orm(primary_key, auto_increment = false)]
    pub listener: i32,
}

impl ActiveModelBehavior for ActiveModel {}
