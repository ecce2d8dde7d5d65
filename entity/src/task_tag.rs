use sea_orm::entity::prelude::*;

/// Junction between tasks and tags.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "task_tags")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub task_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub tag_id: i64,
    #[sea_orm(belongs_to, from = "task_id", to = "id", on_delete = "Cascade")]
    pub task: BelongsTo<super::task::Entity>,
    #[sea_orm(belongs_to, from = "tag_id", to = "id", on_delete = "Cascade")]
    pub tag: BelongsTo<super::tag::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
