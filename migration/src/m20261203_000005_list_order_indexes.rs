//! Indexes that serve each list sort in full, `id` tie-break included, so the
//! first page of any sort reads about `limit` rows whatever the user's size:
//! `(user_id, <sort column>, id)` for each sort, scanned backwards for
//! descending order, and `(user_id, completed, created_at, id)` for the
//! status filter on the default sort. They replace the `(user_id, <column>)`
//! indexes of the first migration, which are prefixes of them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Tasks {
    Table,
    Id,
    UserId,
    CreatedAt,
    UpdatedAt,
    Completed,
    DueDate,
    Priority,
    TitleSearch,
}

const REPLACED: [(&str, Tasks); 5] = [
    ("idx_tasks_user_created_at", Tasks::CreatedAt),
    ("idx_tasks_user_updated_at", Tasks::UpdatedAt),
    ("idx_tasks_user_completed", Tasks::Completed),
    ("idx_tasks_user_due_date", Tasks::DueDate),
    ("idx_tasks_user_priority", Tasks::Priority),
];

const ORDERS: [(&str, &[Tasks]); 6] = [
    ("idx_tasks_user_created_at_id", &[Tasks::CreatedAt]),
    ("idx_tasks_user_updated_at_id", &[Tasks::UpdatedAt]),
    ("idx_tasks_user_title_id", &[Tasks::TitleSearch]),
    ("idx_tasks_user_priority_id", &[Tasks::Priority]),
    ("idx_tasks_user_due_date_id", &[Tasks::DueDate]),
    (
        "idx_tasks_user_completed_created_at_id",
        &[Tasks::Completed, Tasks::CreatedAt],
    ),
];

fn index(name: &str, columns: &[Tasks]) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(Tasks::Table).col(Tasks::UserId);
    for column in columns {
        index.col(*column);
    }
    index.col(Tasks::Id).to_owned()
}

async fn drop(manager: &SchemaManager<'_>, name: &str) -> Result<(), DbErr> {
    manager
        .drop_index(Index::drop().name(name).table(Tasks::Table).to_owned())
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, columns) in ORDERS {
            manager.create_index(index(name, columns)).await?;
        }
        for (name, _) in REPLACED {
            drop(manager, name).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, column) in REPLACED {
            let restored = Index::create()
                .name(name)
                .table(Tasks::Table)
                .col(Tasks::UserId)
                .col(column)
                .to_owned();
            manager.create_index(restored).await?;
        }
        for (name, _) in ORDERS {
            drop(manager, name).await?;
        }
        Ok(())
    }
}
