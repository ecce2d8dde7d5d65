//! Users, tasks, tags and the task-tag junction, with the indexes that keep
//! every list query inside one user's rows.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    Name,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Id,
    UserId,
    Title,
    Description,
    Completed,
    Priority,
    DueDate,
    CompletedAt,
    TitleSearch,
    DescriptionSearch,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Tags {
    Table,
    Id,
    UserId,
    Name,
}

#[derive(DeriveIden)]
enum TaskTags {
    Table,
    TaskId,
    TagId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(text(Users::Id).primary_key())
                    .col(text_null(Users::Email))
                    .col(text_null(Users::Name))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone(Users::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Tasks::Table)
                    .col(big_pk_auto(Tasks::Id))
                    .col(text(Tasks::UserId))
                    .col(text(Tasks::Title))
                    .col(text_null(Tasks::Description))
                    .col(boolean(Tasks::Completed))
                    // Rank: 0 low, 1 medium, 2 high.
                    .col(integer(Tasks::Priority))
                    .col(timestamp_with_time_zone_null(Tasks::DueDate))
                    .col(timestamp_with_time_zone_null(Tasks::CompletedAt))
                    .col(text(Tasks::TitleSearch))
                    .col(text_null(Tasks::DescriptionSearch))
                    .col(timestamp_with_time_zone(Tasks::CreatedAt))
                    .col(timestamp_with_time_zone(Tasks::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_tasks_user")
                            .from(Tasks::Table, Tasks::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        // One index per list sort or filter; each leads with user_id so a query
        // never reads another user's rows.
        for (name, column) in [
            ("idx_tasks_user_created_at", Tasks::CreatedAt),
            ("idx_tasks_user_updated_at", Tasks::UpdatedAt),
            ("idx_tasks_user_completed", Tasks::Completed),
            ("idx_tasks_user_due_date", Tasks::DueDate),
            ("idx_tasks_user_priority", Tasks::Priority),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Tasks::Table)
                        .col(Tasks::UserId)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(Tags::Table)
                    .col(big_pk_auto(Tags::Id))
                    .col(text(Tags::UserId))
                    .col(text(Tags::Name))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_tags_user")
                            .from(Tags::Table, Tags::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_tags_user_name")
                    .table(Tags::Table)
                    .col(Tags::UserId)
                    .col(Tags::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(TaskTags::Table)
                    .col(big_integer(TaskTags::TaskId))
                    .col(big_integer(TaskTags::TagId))
                    .primary_key(Index::create().col(TaskTags::TaskId).col(TaskTags::TagId))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_task_tags_task")
                            .from(TaskTags::Table, TaskTags::TaskId)
                            .to(Tasks::Table, Tasks::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_task_tags_tag")
                            .from(TaskTags::Table, TaskTags::TagId)
                            .to(Tags::Table, Tags::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The primary key serves "tags of these tasks"; this one serves
        // "tasks carrying this tag" and tag counts.
        manager
            .create_index(
                Index::create()
                    .name("idx_task_tags_tag")
                    .table(TaskTags::Table)
                    .col(TaskTags::TagId)
                    .col(TaskTags::TaskId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            TaskTags::Table.into_iden(),
            Tags::Table.into_iden(),
            Tasks::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
