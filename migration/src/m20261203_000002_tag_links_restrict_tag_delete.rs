//! Deleting a tag no longer deletes its links to tasks (PostgreSQL). Orphan
//! tags are swept in the background; should a task be linked to a tag the
//! sweep is deleting at that moment, the sweep fails instead of silently
//! unlinking it. SQLite runs one writer at a time, so its sweep cannot race
//! a link and its (unalterable) cascade stays.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum TaskTags {
    Table,
    TagId,
}

#[derive(DeriveIden)]
enum Tags {
    Table,
    Id,
}

const FOREIGN_KEY: &str = "fk_task_tags_tag";

async fn replace_foreign_key(
    manager: &SchemaManager<'_>,
    on_delete: ForeignKeyAction,
) -> Result<(), DbErr> {
    if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    manager
        .drop_foreign_key(
            ForeignKey::drop()
                .name(FOREIGN_KEY)
                .table(TaskTags::Table)
                .to_owned(),
        )
        .await?;
    manager
        .create_foreign_key(
            ForeignKey::create()
                .name(FOREIGN_KEY)
                .from(TaskTags::Table, TaskTags::TagId)
                .to(Tags::Table, Tags::Id)
                .on_delete(on_delete)
                .to_owned(),
        )
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        replace_foreign_key(manager, ForeignKeyAction::NoAction).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        replace_foreign_key(manager, ForeignKeyAction::Cascade).await
    }
}
