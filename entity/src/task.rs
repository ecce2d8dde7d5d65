use sea_orm::entity::prelude::*;

/// Stored as its rank so that sorting by priority is a plain column sort.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "i32", db_type = "Integer")]
pub enum Priority {
    Low = 0,
    Medium = 1,
    High = 2,
}

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tasks")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: String,
    pub title: String,
    pub description: Option<String>,
    pub completed: bool,
    pub priority: Priority,
    pub due_date: Option<DateTimeUtc>,
    pub completed_at: Option<DateTimeUtc>,
    /// `title` lower-cased in Rust: SQL `LOWER()` folds only ASCII on SQLite
    /// (and on PostgreSQL under the C collation), and search must be Unicode-aware.
    pub title_search: String,
    /// `description` lower-cased, for the same reason as `title_search`.
    pub description_search: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    #[sea_orm(belongs_to, from = "user_id", to = "id", on_delete = "Cascade")]
    pub user: BelongsTo<super::user::Entity>,
    #[sea_orm(has_many, via = "task_tag")]
    pub tags: HasMany<super::tag::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
