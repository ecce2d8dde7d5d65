//! Trigram indexes (`pg_trgm`, GIN) on the lower-cased search keys, so that a
//! `q` search on PostgreSQL reads the rows holding the text's trigrams
//! instead of every task of the user. `pg_trgm` is a trusted extension
//! (PostgreSQL 13+, and on Neon): the database owner may create it.
//!
//! SQLite has no trigram index; its search scans the user's rows, which is
//! correct and, at SQLite's scale, fast enough.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX idx_tasks_title_search_trgm ON tasks USING gin (title_search gin_trgm_ops);
CREATE INDEX idx_tasks_description_search_trgm ON tasks USING gin (description_search gin_trgm_ops);
";

/// The extension stays: other schemas may use it.
const DOWN: &str = "
DROP INDEX idx_tasks_title_search_trgm;
DROP INDEX idx_tasks_description_search_trgm;
";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager.get_connection().execute_unprepared(UP).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager.get_connection().execute_unprepared(DOWN).await?;
        }
        Ok(())
    }
}
