//! `sort=due_date&order=desc` orders by `due_date DESC NULLS LAST, id DESC`
//! (undated tasks last, in both directions). On PostgreSQL the
//! `(user_id, due_date, id)` index read backwards yields `NULLS FIRST`, so a
//! descending page sorted every task of the user; this index serves it.
//! SQLite reads `(user_id, due_date, id)` in two passes for either
//! direction and needs nothing.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(
                    "CREATE INDEX idx_tasks_user_due_date_desc_id \
                     ON tasks (user_id, due_date DESC NULLS LAST, id DESC)",
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("DROP INDEX idx_tasks_user_due_date_desc_id")
                .await?;
        }
        Ok(())
    }
}
