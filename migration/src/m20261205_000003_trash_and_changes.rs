//! The trash and the change feed.
//!
//! - `tasks.deleted_at`: when the task was moved to the trash; NULL while it
//!   is live. The task counts now count live tasks only.
//! - `task_changes`: per task, the owner's change sequence number of its
//!   latest change, and `deleted_at` (Unix seconds) once it is deleted for
//!   good: then the row is its tombstone, kept until `CHANGES_RETENTION`.
//!   Written by triggers on `tasks` only.
//! - `change_sequences`: per user, the last number given out and the highest
//!   number of a forgotten deletion; a feed cursor below it has missed
//!   something and is refused.
//!
//! The numbers come from the user's `change_sequences` row, updated in the
//! writing transaction, which holds its row lock until it commits: a user's
//! writes take numbers one at a time, so no number becomes visible before a
//! lower one. On PostgreSQL the triggers are deferred to the commit, so the
//! lock is held only while committing and a user's concurrent writes
//! overlap in everything else; SQLite has one writer at a time anyway.
//! Triggers number whatever statement (or tool) writes, without a round trip
//! of its own, and on PostgreSQL `NOTIFY` channel `task_changes` with the
//! user id, for the event streams of every instance. Existing tasks are
//! numbered in id order.

use sea_orm::DbBackend;
use sea_orm_migration::{
    prelude::*,
    schema::{big_integer, big_integer_null, text},
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Tasks {
    Table,
    Id,
    UserId,
    DeletedAt,
}

#[derive(DeriveIden)]
enum ChangeSequences {
    Table,
    UserId,
    LastSeq,
    ForgottenThrough,
}

#[derive(DeriveIden)]
enum TaskChanges {
    Table,
    UserId,
    TaskId,
    Seq,
    DeletedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

const FEED_INDEX: &str = "idx_task_changes_user_seq";
const TOMBSTONE_AGE_INDEX: &str = "idx_task_changes_deleted_at";
const TRASH_INDEX: &str = "idx_tasks_user_trashed";
const PURGE_INDEX: &str = "idx_tasks_trashed";

const NUMBER_EXISTING: &str = "
INSERT INTO task_changes (user_id, task_id, seq, deleted_at)
SELECT user_id, id, row_number() OVER (PARTITION BY user_id ORDER BY id), NULL FROM tasks;
INSERT INTO change_sequences (user_id, last_seq, forgotten_through)
SELECT user_id, MAX(seq), 0 FROM task_changes GROUP BY user_id;
";

/// A change of a task deleted as part of deleting its user (a cascade) is
/// not recorded: there is nobody left to tell. Counting: a task counts
/// while it is live.
const POSTGRES_TRIGGERS: &str = r#"
CREATE OR REPLACE FUNCTION next_change_seq(owner text) RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO change_sequences (user_id, last_seq, forgotten_through) VALUES (owner, 1, 0)
    ON CONFLICT (user_id) DO UPDATE SET last_seq = change_sequences.last_seq + 1
    RETURNING last_seq
$$;
CREATE OR REPLACE FUNCTION record_task_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    owner text;
    changed bigint;
    gone bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        owner := OLD.user_id; changed := OLD.id;
        gone := extract(epoch FROM clock_timestamp())::bigint;
    ELSE
        owner := NEW.user_id; changed := NEW.id;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM users WHERE id = owner) THEN
        RETURN NULL;
    END IF;
    INSERT INTO task_changes (user_id, task_id, seq, deleted_at)
    VALUES (owner, changed, next_change_seq(owner), gone)
    ON CONFLICT (user_id, task_id) DO UPDATE
    SET seq = EXCLUDED.seq, deleted_at = EXCLUDED.deleted_at;
    -- Every instance's event streams of the user look again once this
    -- commits (a transaction's identical notifications are sent once).
    PERFORM pg_notify('task_changes', owner);
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER tasks_changes_recorded AFTER INSERT OR UPDATE OR DELETE ON tasks
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION record_task_change();
CREATE OR REPLACE FUNCTION forget_task_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE change_sequences
    SET forgotten_through = GREATEST(forgotten_through, OLD.seq)
    WHERE user_id = OLD.user_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER task_changes_forgotten AFTER DELETE ON task_changes
    FOR EACH ROW EXECUTE FUNCTION forget_task_change();

CREATE OR REPLACE FUNCTION count_tasks() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    owner text;
    added int := 0;
    completed int := 0;
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.deleted_at IS NULL THEN
        owner := OLD.user_id; added := -1; completed := -OLD.completed::int;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.deleted_at IS NULL THEN
        owner := NEW.user_id; added := added + 1; completed := completed + NEW.completed::int;
    END IF;
    IF added = 0 AND completed = 0 THEN
        RETURN NULL;
    END IF;
    INSERT INTO task_counts (user_id, slot, total, completed)
    VALUES (owner, pg_backend_pid() % 1024, added, completed)
    ON CONFLICT (user_id, slot) DO UPDATE
    SET total = task_counts.total + EXCLUDED.total,
        completed = task_counts.completed + EXCLUDED.completed;
    RETURN NULL;
END
$$;
DROP TRIGGER tasks_counted_on_completion ON tasks;
CREATE TRIGGER tasks_counted_on_change AFTER UPDATE OF completed, deleted_at ON tasks
    FOR EACH ROW WHEN (OLD.completed IS DISTINCT FROM NEW.completed
                       OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at)
    EXECUTE FUNCTION count_tasks();
"#;

const POSTGRES_DOWN: &str = r#"
DROP TRIGGER tasks_changes_recorded ON tasks;
DROP TRIGGER tasks_counted_on_change ON tasks;
DROP TRIGGER task_changes_forgotten ON task_changes;
DROP FUNCTION record_task_change();
DROP FUNCTION forget_task_change();
DROP FUNCTION next_change_seq(text);
CREATE OR REPLACE FUNCTION count_tasks() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    owner text;
    added int := 0;
    completed int := 0;
BEGIN
    IF TG_OP = 'INSERT' THEN
        owner := NEW.user_id; added := 1; completed := NEW.completed::int;
    ELSIF TG_OP = 'DELETE' THEN
        owner := OLD.user_id; added := -1; completed := -OLD.completed::int;
    ELSE
        owner := NEW.user_id; completed := NEW.completed::int - OLD.completed::int;
    END IF;
    INSERT INTO task_counts (user_id, slot, total, completed)
    VALUES (owner, pg_backend_pid() % 1024, added, completed)
    ON CONFLICT (user_id, slot) DO UPDATE
    SET total = task_counts.total + EXCLUDED.total,
        completed = task_counts.completed + EXCLUDED.completed;
    RETURN NULL;
END
$$;
CREATE TRIGGER tasks_counted_on_completion AFTER UPDATE OF completed ON tasks
    FOR EACH ROW WHEN (OLD.completed IS DISTINCT FROM NEW.completed)
    EXECUTE FUNCTION count_tasks();
"#;

/// SQLite runs one writer at a time: its triggers number changes at once.
const SQLITE_TRIGGERS: &str = "
CREATE TRIGGER tasks_changes_recorded_on_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO change_sequences (user_id, last_seq, forgotten_through) VALUES (NEW.user_id, 1, 0)
    ON CONFLICT (user_id) DO UPDATE SET last_seq = last_seq + 1;
    INSERT INTO task_changes (user_id, task_id, seq, deleted_at)
    VALUES (NEW.user_id, NEW.id, (SELECT last_seq FROM change_sequences WHERE user_id = NEW.user_id), NULL)
    ON CONFLICT (user_id, task_id) DO UPDATE SET seq = excluded.seq, deleted_at = NULL;
END;
CREATE TRIGGER tasks_changes_recorded_on_update AFTER UPDATE ON tasks BEGIN
    INSERT INTO change_sequences (user_id, last_seq, forgotten_through) VALUES (NEW.user_id, 1, 0)
    ON CONFLICT (user_id) DO UPDATE SET last_seq = last_seq + 1;
    INSERT INTO task_changes (user_id, task_id, seq, deleted_at)
    VALUES (NEW.user_id, NEW.id, (SELECT last_seq FROM change_sequences WHERE user_id = NEW.user_id), NULL)
    ON CONFLICT (user_id, task_id) DO UPDATE SET seq = excluded.seq, deleted_at = NULL;
END;
CREATE TRIGGER tasks_changes_recorded_on_delete AFTER DELETE ON tasks
WHEN EXISTS (SELECT 1 FROM users WHERE id = OLD.user_id) BEGIN
    INSERT INTO change_sequences (user_id, last_seq, forgotten_through) VALUES (OLD.user_id, 1, 0)
    ON CONFLICT (user_id) DO UPDATE SET last_seq = last_seq + 1;
    INSERT INTO task_changes (user_id, task_id, seq, deleted_at)
    VALUES (OLD.user_id, OLD.id, (SELECT last_seq FROM change_sequences WHERE user_id = OLD.user_id),
            unixepoch())
    ON CONFLICT (user_id, task_id) DO UPDATE SET seq = excluded.seq, deleted_at = excluded.deleted_at;
END;
CREATE TRIGGER task_changes_forgotten AFTER DELETE ON task_changes BEGIN
    UPDATE change_sequences SET forgotten_through = MAX(forgotten_through, OLD.seq)
    WHERE user_id = OLD.user_id;
END;

DROP TRIGGER tasks_counted_on_delete;
DROP TRIGGER tasks_counted_on_completion;
CREATE TRIGGER tasks_counted_on_delete AFTER DELETE ON tasks
WHEN OLD.deleted_at IS NULL BEGIN
    UPDATE task_counts
    SET total = total - 1, completed = completed - OLD.completed
    WHERE user_id = OLD.user_id AND slot = 0;
END;
CREATE TRIGGER tasks_counted_on_change AFTER UPDATE OF completed, deleted_at ON tasks
WHEN OLD.completed <> NEW.completed OR (OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL) BEGIN
    UPDATE task_counts
    SET total = total + (NEW.deleted_at IS NULL) - (OLD.deleted_at IS NULL),
        completed = completed + (NEW.deleted_at IS NULL AND NEW.completed)
                              - (OLD.deleted_at IS NULL AND OLD.completed)
    WHERE user_id = NEW.user_id AND slot = 0;
END;
";

const SQLITE_DOWN: &str = "
DROP TRIGGER tasks_changes_recorded_on_insert;
DROP TRIGGER tasks_changes_recorded_on_update;
DROP TRIGGER tasks_changes_recorded_on_delete;
DROP TRIGGER task_changes_forgotten;
DROP TRIGGER tasks_counted_on_delete;
DROP TRIGGER tasks_counted_on_change;
CREATE TRIGGER tasks_counted_on_delete AFTER DELETE ON tasks BEGIN
    UPDATE task_counts
    SET total = total - 1, completed = completed - OLD.completed
    WHERE user_id = OLD.user_id AND slot = 0;
END;
CREATE TRIGGER tasks_counted_on_completion AFTER UPDATE OF completed ON tasks
WHEN OLD.completed <> NEW.completed BEGIN
    UPDATE task_counts
    SET completed = completed + NEW.completed - OLD.completed
    WHERE user_id = NEW.user_id AND slot = 0;
END;
";

fn index(name: &str, columns: &[Tasks]) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(Tasks::Table);
    for column in columns {
        index.col(*column);
    }
    index.to_owned()
}

async fn execute(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    manager.get_connection().execute_unprepared(sql).await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        manager
            .alter_table(
                Table::alter()
                    .table(Tasks::Table)
                    .add_column(
                        ColumnDef::new(Tasks::DeletedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        let mut sequences = Table::create()
            .table(ChangeSequences::Table)
            .col(text(ChangeSequences::UserId).primary_key())
            .col(big_integer(ChangeSequences::LastSeq))
            .col(big_integer(ChangeSequences::ForgottenThrough).default(0))
            .foreign_key(
                ForeignKey::create()
                    .from(ChangeSequences::Table, ChangeSequences::UserId)
                    .to(Users::Table, Users::Id)
                    .on_delete(ForeignKeyAction::Cascade),
            )
            .to_owned();
        let mut changes = Table::create()
            .table(TaskChanges::Table)
            .col(text(TaskChanges::UserId))
            .col(big_integer(TaskChanges::TaskId))
            .col(big_integer(TaskChanges::Seq))
            // Unix seconds, so that triggers on both databases write it alike.
            .col(big_integer_null(TaskChanges::DeletedAt))
            .primary_key(
                Index::create()
                    .col(TaskChanges::UserId)
                    .col(TaskChanges::TaskId),
            )
            .foreign_key(
                ForeignKey::create()
                    .from(TaskChanges::Table, TaskChanges::UserId)
                    .to(Users::Table, Users::Id)
                    .on_delete(ForeignKeyAction::Cascade),
            )
            .to_owned();
        if backend == DbBackend::Sqlite {
            sequences.extra("WITHOUT ROWID");
            changes.extra("WITHOUT ROWID");
        }
        manager.create_table(sequences).await?;
        manager.create_table(changes).await?;
        execute(manager, NUMBER_EXISTING).await?;
        manager
            .create_index(
                Index::create()
                    .name(FEED_INDEX)
                    .table(TaskChanges::Table)
                    .col(TaskChanges::UserId)
                    .col(TaskChanges::Seq)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Only tombstones, oldest forgotten first; only trashed tasks, for
        // the trash listed most recently trashed first and for the purge.
        manager
            .create_index(
                Index::create()
                    .name(TOMBSTONE_AGE_INDEX)
                    .table(TaskChanges::Table)
                    .col(TaskChanges::DeletedAt)
                    .and_where(Expr::col(TaskChanges::DeletedAt).is_not_null())
                    .to_owned(),
            )
            .await?;
        let trashed = || Expr::col(Tasks::DeletedAt).is_not_null();
        manager
            .create_index(
                index(TRASH_INDEX, &[Tasks::UserId, Tasks::DeletedAt, Tasks::Id])
                    .and_where(trashed())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(PURGE_INDEX, &[Tasks::DeletedAt])
                    .and_where(trashed())
                    .to_owned(),
            )
            .await?;
        match backend {
            DbBackend::Postgres => execute(manager, POSTGRES_TRIGGERS).await,
            _ => execute(manager, SQLITE_TRIGGERS).await,
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        // Trashed tasks would come back as live ones: they go (while the
        // counts still know they are not counted).
        execute(manager, "DELETE FROM tasks WHERE deleted_at IS NOT NULL").await?;
        match backend {
            DbBackend::Postgres => execute(manager, POSTGRES_DOWN).await?,
            _ => execute(manager, SQLITE_DOWN).await?,
        }
        for name in [TRASH_INDEX, PURGE_INDEX] {
            manager
                .drop_index(Index::drop().name(name).table(Tasks::Table).to_owned())
                .await?;
        }
        for table in [
            TaskChanges::Table.into_iden(),
            ChangeSequences::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Tasks::Table)
                    .drop_column(Tasks::DeletedAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
