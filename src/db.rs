//! Connecting to SQLite or PostgreSQL, and telling "the database is down"
//! apart from other database errors.

use std::time::Duration;

use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DbErr, RuntimeErr, sqlx,
    sqlx::sqlite::SqliteJournalMode,
};

use crate::config::Config;

/// Opens the pool named by `DATABASE_URL`. The SQLite file is created if
/// missing; a `postgres://` URL may carry `sslmode=require` (TLS via rustls).
pub async fn connect(config: &Config) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(&config.database_url);
    options
        .acquire_timeout(config.database_acquire_timeout)
        .connect_timeout(config.database_acquire_timeout)
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|opts| {
            // WAL lets other processes read while the service writes; a lock
            // held by another writer is waited for briefly, then answered 503.
            opts.journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(2))
        });
    if config.database_url.starts_with("sqlite:") {
        // SQLite takes one writer at a time; one connection queues requests in
        // the pool instead of failing them with SQLITE_BUSY.
        options.max_connections(1);
    } else {
        options.max_connections(config.database_max_connections);
    }
    let mut db = Database::connect(options).await?;
    db.set_metric_callback(log_query);
    Ok(db)
}

/// Queries at least this slow are logged at `warn`; the rest at `trace`
/// (`RUST_LOG=todo_api::db=trace` shows every statement).
const SLOW_QUERY: Duration = Duration::from_millis(200);

fn log_query(info: &sea_orm::metric::Info<'_>) {
    let elapsed_ms = info.elapsed.as_secs_f64() * 1000.0;
    let sql = &info.statement.sql;
    if info.elapsed >= SLOW_QUERY {
        tracing::warn!(elapsed_ms, failed = info.failed, %sql, "slow query");
    } else {
        tracing::trace!(elapsed_ms, failed = info.failed, %sql, "query");
    }
}

/// True when the error means the database cannot be reached or is shutting
/// down, as opposed to a bad query: the client should retry (503), and the
/// pool reconnects on its own once the database is back.
pub fn is_unavailable(err: &DbErr) -> bool {
    let runtime = match err {
        // No connection could be had: refused, timed out, or the server said
        // no (e.g. "database is not accepting connections").
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return true,
        DbErr::Exec(runtime) | DbErr::Query(runtime) => runtime,
        _ => return false,
    };
    let RuntimeErr::SqlxError(sqlx_err) = runtime else {
        return false;
    };
    match sqlx_err.as_ref() {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db_err) => {
            let code = db_err.code();
            let code = code.as_deref().unwrap_or_default();
            if db_err
                .try_downcast_ref::<sqlx::sqlite::SqliteError>()
                .is_some()
            {
                // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
                code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
            } else {
                // PostgreSQL: class 08 connection exception, 57P0x shutdown or
                // "cannot connect now", 53300 too many connections, 3D000 the
                // database is gone.
                code.starts_with("08")
                    || code.starts_with("57P0")
                    || code == "53300"
                    || code == "3D000"
            }
        }
        _ => false,
    }
}
