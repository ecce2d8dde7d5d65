//! SQLite's counterpart of the `pg_trgm` indexes: an FTS5 table with the
//! trigram tokenizer over the search keys, kept in step with `tasks` by
//! triggers, so that a `q` search of three or more characters reads the
//! tasks holding the text's trigrams instead of every task of the user.
//!
//! It is an external-content table (`content='tasks'`): it stores only the
//! index, and the triggers hand it each row's old keys on update and delete,
//! as FTS5 requires. The keys are already lower-cased, so the tokenizer is
//! case-sensitive: a trigram phrase then matches exactly the tasks whose key
//! contains the text, as `LIKE` does.
//!
//! Nothing ranks matches, so no per-row token counts are kept
//! (`columnsize=0`): one write less for every insert.
//!
//! Maintaining the index costs creates on SQLite about a fifth of their
//! throughput (measured with `bench/compare.sh`); in exchange a search of a
//! large user takes milliseconds instead of half a second.
//!
//! PostgreSQL has its trigram indexes (the migration before the previous).

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "
CREATE VIRTUAL TABLE task_search USING fts5(
    title_search, description_search,
    content='tasks', content_rowid='id',
    tokenize='trigram case_sensitive 1',
    columnsize=0
);
INSERT INTO task_search (task_search) VALUES ('rebuild');
CREATE TRIGGER task_search_on_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO task_search (rowid, title_search, description_search)
    VALUES (NEW.id, NEW.title_search, NEW.description_search);
END;
CREATE TRIGGER task_search_on_delete AFTER DELETE ON tasks BEGIN
    INSERT INTO task_search (task_search, rowid, title_search, description_search)
    VALUES ('delete', OLD.id, OLD.title_search, OLD.description_search);
END;
CREATE TRIGGER task_search_on_update AFTER UPDATE OF title_search, description_search ON tasks
BEGIN
    INSERT INTO task_search (task_search, rowid, title_search, description_search)
    VALUES ('delete', OLD.id, OLD.title_search, OLD.description_search);
    INSERT INTO task_search (rowid, title_search, description_search)
    VALUES (NEW.id, NEW.title_search, NEW.description_search);
END;
";

const DOWN: &str = "
DROP TRIGGER task_search_on_insert;
DROP TRIGGER task_search_on_delete;
DROP TRIGGER task_search_on_update;
DROP TABLE task_search;
";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Sqlite {
            manager.get_connection().execute_unprepared(UP).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Sqlite {
            manager.get_connection().execute_unprepared(DOWN).await?;
        }
        Ok(())
    }
}
