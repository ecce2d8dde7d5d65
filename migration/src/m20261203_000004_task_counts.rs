//! Per-user task counts, kept by triggers in the transaction of every write
//! to `tasks` (whichever statement or tool makes it), so that a list without
//! filters, or filtered by status only, reads its total from a few rows
//! instead of counting every matching task. Existing tasks are counted once
//! here.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum TaskCounts {
    Table,
    UserId,
    Slot,
    Total,
    Completed,
}

/// A user's counts are spread over rows on PostgreSQL: each
/// connection adds its changes to the row of its backend's slot, so writers
/// of one user on different connections rarely wait for each other (one
/// shared row would serialise them until commit); a reader sums the rows,
/// at most one per connection that ever wrote for the user. Backend pids of
/// a pool are close together, so `% 1024` seldom puts two on one row.
/// `OR REPLACE`: `migrate fresh` drops tables (and their triggers) but not
/// functions.
const POSTGRES_TRIGGERS: &str = r#"
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
CREATE TRIGGER tasks_counted_on_insert AFTER INSERT ON tasks
    FOR EACH ROW EXECUTE FUNCTION count_tasks();
CREATE TRIGGER tasks_counted_on_delete AFTER DELETE ON tasks
    FOR EACH ROW EXECUTE FUNCTION count_tasks();
CREATE TRIGGER tasks_counted_on_completion AFTER UPDATE OF completed ON tasks
    FOR EACH ROW WHEN (OLD.completed IS DISTINCT FROM NEW.completed)
    EXECUTE FUNCTION count_tasks();
"#;

/// SQLite has one writer at a time: one row per user (slot 0).
const SQLITE_TRIGGERS: [&str; 3] = [
    r#"CREATE TRIGGER tasks_counted_on_insert AFTER INSERT ON tasks BEGIN
        INSERT INTO task_counts (user_id, slot, total, completed)
        VALUES (NEW.user_id, 0, 1, NEW.completed)
        ON CONFLICT (user_id, slot) DO UPDATE
        SET total = total + 1, completed = completed + excluded.completed;
    END"#,
    r#"CREATE TRIGGER tasks_counted_on_delete AFTER DELETE ON tasks BEGIN
        UPDATE task_counts
        SET total = total - 1, completed = completed - OLD.completed
        WHERE user_id = OLD.user_id AND slot = 0;
    END"#,
    r#"CREATE TRIGGER tasks_counted_on_completion AFTER UPDATE OF completed ON tasks
    WHEN OLD.completed <> NEW.completed BEGIN
        UPDATE task_counts
        SET completed = completed + NEW.completed - OLD.completed
        WHERE user_id = NEW.user_id AND slot = 0;
    END"#,
];

const COUNT_EXISTING: &str = "INSERT INTO task_counts (user_id, slot, total, completed) \
     SELECT user_id, 0, COUNT(*), SUM(CASE WHEN completed THEN 1 ELSE 0 END) \
     FROM tasks GROUP BY user_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TaskCounts::Table)
                    .col(ColumnDef::new(TaskCounts::UserId).text().not_null())
                    .col(ColumnDef::new(TaskCounts::Slot).small_integer().not_null())
                    .col(ColumnDef::new(TaskCounts::Total).big_integer().not_null())
                    .col(
                        ColumnDef::new(TaskCounts::Completed)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(TaskCounts::UserId)
                            .col(TaskCounts::Slot),
                    )
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(POSTGRES_TRIGGERS).await?;
            }
            _ => {
                for trigger in SQLITE_TRIGGERS {
                    db.execute_unprepared(trigger).await?;
                }
            }
        }
        db.execute_unprepared(COUNT_EXISTING).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for trigger in [
            "tasks_counted_on_insert",
            "tasks_counted_on_delete",
            "tasks_counted_on_completion",
        ] {
            let drop = match manager.get_database_backend() {
                DbBackend::Postgres => format!("DROP TRIGGER {trigger} ON tasks"),
                _ => format!("DROP TRIGGER {trigger}"),
            };
            db.execute_unprepared(&drop).await?;
        }
        if manager.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared("DROP FUNCTION count_tasks()").await?;
        }
        manager
            .drop_table(Table::drop().table(TaskCounts::Table).to_owned())
            .await
    }
}
