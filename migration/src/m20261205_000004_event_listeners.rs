//! Notify only the users someone listens for.
//!
//! A `NOTIFY` is not free: PostgreSQL serialises the commits of every
//! notifying transaction in the cluster (a global lock held through the
//! commit's WAL flush), which cost a quarter to a third of create
//! throughput when every change notified. `event_listeners` holds, per user
//! with an open event stream, the backend pid of each instance's `LISTEN`
//! session; the numbering trigger notifies only users with a row. Rows of a
//! session that is gone are deleted by the instances (they compare with
//! `pg_stat_activity`), so a crashed instance costs notifications, never
//! missed ones.
//!
//! The trigger checks for a row after numbering the change, that is after
//! taking the user's `change_sequences` row lock, and an instance registers
//! a user while holding a share lock on that row and before its stream's
//! first read. Either the registration commits first and the check (a fresh
//! snapshot, READ COMMITTED) sees it, or the write commits first and the
//! stream's first read sees the change.
//!
//! SQLite has the table too (one schema), unused: one process, no `NOTIFY`.

use sea_orm::DbBackend;
use sea_orm_migration::{
    prelude::*,
    schema::{integer, text},
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum EventListeners {
    Table,
    UserId,
    Listener,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

/// `record_task_change` as the `trash_and_changes` migration wrote it, with
/// `NOTIFY` standing for how it notifies.
const RECORD_TASK_CHANGE: &str = r#"
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
NOTIFY
    RETURN NULL;
END
$$;
"#;

/// Up: only users listened for, checked after `next_change_seq` took the
/// user's row lock (see the module documentation for why this order cannot
/// miss a new listener).
const GATED_NOTIFY: &str = "
    IF EXISTS (SELECT 1 FROM event_listeners WHERE user_id = owner) THEN
        PERFORM pg_notify('task_changes', owner);
    END IF;";

/// Down: every change, as before.
const ALWAYS_NOTIFY: &str = "
    -- Every instance's event streams of the user look again once this
    -- commits (a transaction's identical notifications are sent once).
    PERFORM pg_notify('task_changes', owner);";

async fn notify_with(manager: &SchemaManager<'_>, notify: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() == DbBackend::Postgres {
        let function = RECORD_TASK_CHANGE.replace("\nNOTIFY\n", &format!("{notify}\n"));
        manager
            .get_connection()
            .execute_unprepared(&function)
            .await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut listeners = Table::create()
            .table(EventListeners::Table)
            .col(text(EventListeners::UserId))
            .col(integer(EventListeners::Listener))
            .primary_key(
                Index::create()
                    .col(EventListeners::UserId)
                    .col(EventListeners::Listener),
            )
            .foreign_key(
                ForeignKey::create()
                    .from(EventListeners::Table, EventListeners::UserId)
                    .to(Users::Table, Users::Id)
                    .on_delete(ForeignKeyAction::Cascade),
            )
            .to_owned();
        if manager.get_database_backend() == DbBackend::Sqlite {
            listeners.extra("WITHOUT ROWID");
        }
        manager.create_table(listeners).await?;
        notify_with(manager, GATED_NOTIFY).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        notify_with(manager, ALWAYS_NOTIFY).await?;
        manager
            .drop_table(Table::drop().table(EventListeners::Table).to_owned())
            .await
    }
}
