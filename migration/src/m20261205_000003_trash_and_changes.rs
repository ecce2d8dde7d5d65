//! The trash and the change feed.
//!
//! - `tasks.deleted_at`: when the task was moved to the trash; NULL while it
//!   is live. The task counts now count live tasks only.
//! - `tasks.change_seq`: the user's change sequence number of the task's
//!   latest change, set by triggers on every insert and update.
//! - `task_tombstones`: a task deleted for good, with the sequence number of
//!   its deletion, written by a trigger on every delete. The service forgets
//!   them after `CHANGES_RETENTION`.
//! - `change_sequences`: per user, the last number given out and the highest
//!   number of a forgotten deletion; a feed cursor below it has missed
//!   something and is refused.
//!
//! The numbers come from the user's `change_sequences` row, updated in the
//! writing transaction, which holds its row lock until it commits: a user's
//! writes take numbers one at a time, so no number becomes visible before a
//! lower one. Triggers give the number whichever statement (or tool) writes,
//! without a round trip of its own. Existing tasks are numbered in id order.

use sea_orm::DbBackend;
use sea_orm_migration::{
    prelude::*,
    schema::{big_integer, text},
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Tasks {
    Table,
    Id,
    UserId,
    DeletedAt,
    ChangeSeq,
}

#[derive(DeriveIden)]
enum ChangeSequences {
    Table,
    UserId,
    LastSeq,
    ForgottenThrough,
}

#[derive(DeriveIden)]
enum TaskTombstones {
    Table,
    UserId,
    ChangeSeq,
    TaskId,
    DeletedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

const CHANGES_INDEX: &str = "idx_tasks_user_change_seq";
const TRASH_INDEX: &str = "idx_tasks_user_trashed";
const PURGE_INDEX: &str = "idx_tasks_trashed";
const TOMBSTONE_AGE_INDEX: &str = "idx_task_tombstones_deleted_at";

const NUMBER_EXISTING: &str = "
UPDATE tasks SET change_seq = numbered.seq
FROM (SELECT id, row_number() OVER (PARTITION BY user_id ORDER BY id) AS seq FROM tasks) AS numbered
WHERE tasks.id = numbered.id;
INSERT INTO change_sequences (user_id, last_seq, forgotten_through)
SELECT user_id, MAX(change_seq), 0 FROM tasks GROUP BY user_id;
";

/// `next_change_seq` is a SQL function so that both triggers share it.
/// A task deleted as part of deleting its user (a cascade) leaves no
/// tombstone: there is nobody left to tell. Counting: a task counts while
/// it is live.
const POSTGRES_TRIGGERS: &str = r#"
CREATE OR REPLACE FUNCTION next_change_seq(owner text) RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO change_sequences (user_id, last_seq, forgotten_through) VALUES (owner, 1, 0)
    ON CONFLICT (user_id) DO UPDATE SET last_seq = change_sequences.last_seq + 1
    RETURNING last_seq
$$;
CREATE OR REPLACE FUNCTION sequence_task_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.change_seq := next_change_seq(NEW.user_id);
    RETURN NEW;
END
$$;
CREATE TRIGGER tasks_sequenced BEFORE INSERT OR UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION sequence_task_change();
CREATE OR REPLACE FUNCTION remember_task_deletion() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM users WHERE id = OLD.user_id) THEN
        INSERT INTO task_tombstones (user_id, change_seq, task_id, deleted_at)
        VALUES (OLD.user_id, next_change_seq(OLD.user_id), OLD.id,
                extract(epoch FROM clock_timestamp())::bigint);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER tasks_remembered_on_delete AFTER DELETE ON tasks
    FOR EACH ROW EXECUTE FUNCTION remember_task_deletion();
CREATE OR REPLACE FUNCTION forget_task_deletion() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE change_sequences
    SET forgotten_through = GREATEST(forgotten_through, OLD.change_seq)
    WHERE user_id = OLD.user_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER task_tombstones_forgotten AFTER DELETE ON task_tombstones
    FOR EACH ROW EXECUTE FUNCTION forget_task_deletion();

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
DROP TRIGGER tasks_sequenced ON tasks;
DROP TRIGGER tasks_remembered_on_delete ON tasks;
DROP TRIGGER tasks_counted_on_change ON tasks;
DROP TRIGGER task_tombstones_forgotten ON task_tombstones;
DROP FUNCTION sequence_task_change();
DROP FUNCTION remember_task_deletion();
DROP FUNCTION forget_task_deletion();
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

/// SQLite cannot change the row an insert or update is writing, so its
/// triggers number the row just after. The numbering update changes only
/// `change_seq`, which the update trigger's `WHEN` skips.
const SQLITE_TRIGGERS: &str = "
CREATE TRIGGER tasks_sequenced_on_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO change_sequences (user_id, last_seq, forgotten_through) VALUES (NEW.user_id, 1, 0)
    ON CONFLICT (user_id) DO UPDATE SET last_seq = last_seq + 1;
    UPDATE tasks SET change_seq = (SELECT last_seq FROM change_sequences WHERE user_id = NEW.user_id)
    WHERE id = NEW.id;
END;
CREATE TRIGGER tasks_sequenced_on_update AFTER UPDATE ON tasks
WHEN NEW.change_seq = OLD.change_seq BEGIN
    INSERT INTO change_sequences (user_id, last_seq, forgotten_through) VALUES (NEW.user_id, 1, 0)
    ON CONFLICT (user_id) DO UPDATE SET last_seq = last_seq + 1;
    UPDATE tasks SET change_seq = (SELECT last_seq FROM change_sequences WHERE user_id = NEW.user_id)
    WHERE id = NEW.id;
END;
CREATE TRIGGER tasks_remembered_on_delete AFTER DELETE ON tasks
WHEN EXISTS (SELECT 1 FROM users WHERE id = OLD.user_id) BEGIN
    INSERT INTO change_sequences (user_id, last_seq, forgotten_through) VALUES (OLD.user_id, 1, 0)
    ON CONFLICT (user_id) DO UPDATE SET last_seq = last_seq + 1;
    INSERT INTO task_tombstones (user_id, change_seq, task_id, deleted_at)
    VALUES (OLD.user_id, (SELECT last_seq FROM change_sequences WHERE user_id = OLD.user_id),
            OLD.id, unixepoch());
END;
CREATE TRIGGER task_tombstones_forgotten AFTER DELETE ON task_tombstones BEGIN
    UPDATE change_sequences SET forgotten_through = MAX(forgotten_through, OLD.change_seq)
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
DROP TRIGGER tasks_sequenced_on_insert;
DROP TRIGGER tasks_sequenced_on_update;
DROP TRIGGER tasks_remembered_on_delete;
DROP TRIGGER task_tombstones_forgotten;
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
        manager
            .alter_table(
                Table::alter()
                    .table(Tasks::Table)
                    .add_column(big_integer(Tasks::ChangeSeq).default(0))
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
        let mut tombstones = Table::create()
            .table(TaskTombstones::Table)
            .col(text(TaskTombstones::UserId))
            .col(big_integer(TaskTombstones::ChangeSeq))
            .col(big_integer(TaskTombstones::TaskId))
            // Unix seconds, so that triggers on both databases write it alike.
            .col(big_integer(TaskTombstones::DeletedAt))
            .primary_key(
                Index::create()
                    .col(TaskTombstones::UserId)
                    .col(TaskTombstones::ChangeSeq),
            )
            .foreign_key(
                ForeignKey::create()
                    .from(TaskTombstones::Table, TaskTombstones::UserId)
                    .to(Users::Table, Users::Id)
                    .on_delete(ForeignKeyAction::Cascade),
            )
            .to_owned();
        if backend == DbBackend::Sqlite {
            sequences.extra("WITHOUT ROWID");
            tombstones.extra("WITHOUT ROWID");
        }
        manager.create_table(sequences).await?;
        manager.create_table(tombstones).await?;
        manager
            .create_index(
                Index::create()
                    .name(TOMBSTONE_AGE_INDEX)
                    .table(TaskTombstones::Table)
                    .col(TaskTombstones::DeletedAt)
                    .to_owned(),
            )
            .await?;
        execute(manager, NUMBER_EXISTING).await?;
        manager
            .create_index(index(CHANGES_INDEX, &[Tasks::UserId, Tasks::ChangeSeq]))
            .await?;
        // Only trashed tasks are in these two: the trash listed most
        // recently trashed first, and the purge of the oldest.
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
        for name in [CHANGES_INDEX, TRASH_INDEX, PURGE_INDEX] {
            manager
                .drop_index(Index::drop().name(name).table(Tasks::Table).to_owned())
                .await?;
        }
        for table in [
            TaskTombstones::Table.into_iden(),
            ChangeSequences::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        for column in [Tasks::DeletedAt, Tasks::ChangeSeq] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Tasks::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
