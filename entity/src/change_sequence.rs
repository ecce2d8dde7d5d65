use sea_orm::entity::prelude::*;

/// A user's change sequence, kept by database triggers on `tasks` (see the
/// `trash_and_changes` migration) and never written by the service.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "change_sequences")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    /// The last number given to a change of the user's tasks.
    pub last_seq: i64,
    /// The highest number of a forgotten deletion (0: none): a change feed
    /// cursor before it would miss that deletion.
    pub forgotten_through: i64,
}

impl ActiveModelBehavior for ActiveModel {}
