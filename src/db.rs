//! Connecting to SQLite or PostgreSQL, and telling "the database is down"
//! apart from other database errors.

use std::{
    sync::{
        Arc, LazyLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{SubsecRound, Utc};
use entity::write_probe;
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    RuntimeErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
    sea_query::{Func, OnConflict, Query},
    sqlx::{
        self, Connection,
        pool::PoolConnectionMetadata,
        postgres::PgConnection,
        sqlite::{SqliteConnection, SqliteJournalMode},
    },
};

use crate::{
    config::{Config, MAX_BODY_BYTES},
    error::ApiError,
    telemetry::{self, metrics::PoolStats},
};

/// How long a pooled connection may sit idle before it is pinged on acquire.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(30);

/// The pools requests run their statements on.
///
/// SQLite takes one writer at a time but, in WAL mode, readers alongside it:
/// reads get a pool of their own, so a list never queues behind a write or
/// behind other lists. On PostgreSQL (and an in-memory SQLite database, which
/// is private to its one connection) both are the same pool.
#[derive(Clone, Debug)]
pub struct Pools {
    /// For statements that only read; may lag no committed write.
    pub reader: DatabaseConnection,
    /// For everything that writes, and reads inside a write.
    pub writer: DatabaseConnection,
}

/// Opens the pools named by `DATABASE_URL`. The SQLite file is created if
/// missing; a `postgres://` URL may carry `sslmode=require` (TLS via rustls).
pub async fn connect(config: &Config) -> Result<Pools, DbErr> {
    let url = &config.database_url;
    if !url.starts_with("sqlite:") {
        let pool = open(config, config.database_max_connections, false).await?;
        return Ok(Pools {
            reader: pool.clone(),
            writer: pool,
        });
    }
    // One writer queues writes in the pool instead of failing them with
    // SQLITE_BUSY. It connects first, so the file exists and is in WAL mode
    // before any reader opens it.
    let writer = open(config, 1, false).await?;
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let reader = if in_memory {
        writer.clone()
    } else {
        open(config, sqlite_readers(config), true).await?
    };
    Ok(Pools { reader, writer })
}

/// Each pool as it stands, for the metrics: `reader` and `writer` on a
/// SQLite file, `writer` alone where both are one pool (PostgreSQL,
/// in-memory SQLite).
pub fn pool_stats(pools: &Pools) -> Vec<PoolStats> {
    match pools.writer.get_database_backend() {
        DbBackend::Postgres => {
            vec![sqlx_pool_stats(
                "writer",
                pools.writer.get_postgres_connection_pool(),
            )]
        }
        DbBackend::Sqlite => {
            let writer = pools.writer.get_sqlite_connection_pool();
            let reader = pools.reader.get_sqlite_connection_pool();
            let mut stats = vec![sqlx_pool_stats("writer", writer)];
            // A clone of a pool shares its options; another pool has its own.
            if !Arc::ptr_eq(&writer.connect_options(), &reader.connect_options()) {
                stats.push(sqlx_pool_stats("reader", reader));
            }
            stats
        }
        _ => Vec::new(),
    }
}

fn sqlx_pool_stats<DB: sqlx::Database>(name: &'static str, pool: &sqlx::Pool<DB>) -> PoolStats {
    PoolStats {
        name,
        open: pool.size(),
        idle: pool.num_idle(),
        max: pool.options().get_max_connections(),
    }
}

/// Enough readers to keep every core busy, bounded by the configured pool
/// size: a SQLite connection is a thread and its own page cache.
fn sqlite_readers(config: &Config) -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per_core = u32::try_from(cores * 2).unwrap_or(u32::MAX);
    per_core.min(config.database_max_connections)
}

async fn open(
    config: &Config,
    max_connections: u32,
    sqlite_query_only: bool,
) -> Result<DatabaseConnection, DbErr> {
    let statement_timeout = config.database_statement_timeout;
    let mut options = ConnectOptions::new(&config.database_url);
    options
        .max_connections(max_connections)
        .acquire_timeout(config.database_acquire_timeout)
        .connect_timeout(config.database_acquire_timeout)
        .sqlx_logging(false)
        // sqlx pings a pooled connection on every acquire by default: a round
        // trip per statement. Only a connection idle long enough for a server,
        // pooler or NAT to have dropped it is checked now; one that died while
        // in use fails its statement (503) and is discarded on release.
        .test_before_acquire_if_idle_for(IDLE_BEFORE_PING)
        .map_sqlx_sqlite_opts(move |opts| {
            // WAL lets readers (ours and other processes') go on while the
            // writer writes; a lock held by another writer is waited for
            // briefly, then answered 503.
            let opts = opts
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(statement_timeout);
            if sqlite_query_only {
                // A bug that writes through the reader pool fails loudly
                // instead of racing the writer for the lock.
                opts.pragma("query_only", "ON")
            } else {
                opts
            }
        })
        .map_sqlx_postgres_opts(move |opts| match statement_timeout.as_millis() {
            0 => opts,
            // A startup parameter, so it holds on every connection without a
            // round trip; lock waits count against it too.
            ms => opts.options([("statement_timeout", ms.to_string())]),
        })
        .map_sqlx_sqlite_pool_opts(|pool| {
            pool.after_release(|conn, meta| Box::pin(sqlite_is_reusable(conn, meta)))
        })
        .map_sqlx_postgres_pool_opts(|pool| {
            pool.after_release(|conn, meta| Box::pin(postgres_is_reusable(conn, meta)))
        })
        .map_sqlx_postgres_before_acquire(|conn, meta| {
            Box::pin(async move {
                if idle_since_a_lost_connection(meta.idle_for) {
                    // Discarded (and replaced) if the server dropped it too.
                    return Ok(conn.ping().await.is_ok());
                }
                Ok(true)
            })
        });
    let mut db = Database::connect(options).await?;
    db.set_metric_callback(telemetry::log_query);
    Ok(db)
}

/// Any number of instances can start together on a new or outdated database:
/// all pending migrations run in one transaction that first takes an
/// exclusive lock, so one instance migrates while the others wait, then find
/// nothing left to do. The lock is transaction-scoped (PostgreSQL
/// `pg_advisory_xact_lock`; SQLite `BEGIN IMMEDIATE`), so it holds through a
/// transaction-mode pooler (PgBouncer, Neon's `-pooler` host) too.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    let txn = db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await?;
    if db.get_database_backend() == DbBackend::Postgres {
        let lock = Query::select()
            .expr(Func::cust("pg_advisory_xact_lock").arg(MIGRATION_LOCK))
            .to_owned();
        txn.execute(&lock).await?;
    }
    Migrator::up(&txn, None).await?;
    txn.commit().await
}

/// The advisory lock key of migrations: "todo-api" as ASCII.
const MIGRATION_LOCK: i64 = 0x746f_646f_2d61_7069;

/// Whether a connection returned to the pool may serve the next request.
///
/// After SQLITE_FULL or an I/O error SQLite may roll the transaction back by
/// itself; the ROLLBACK that sqlx then sends fails, its transaction depth is
/// never reset, and every later `begin`/`commit` becomes a SAVEPOINT/RELEASE
/// inside a transaction that never commits: writes would be acknowledged and
/// lost. So a connection that sqlx still believes to be inside a transaction,
/// once its queued ROLLBACK has run, is closed (which rolls back whatever is
/// open) instead of reused.
async fn sqlite_is_reusable(
    conn: &mut SqliteConnection,
    _: PoolConnectionMetadata,
) -> Result<bool, sqlx::Error> {
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    // A dropped transaction queues its ROLLBACK on the connection's worker;
    // taking the handle waits until the worker has processed it.
    drop(conn.lock_handle().await?);
    let clean = !conn.is_in_transaction();
    if !clean {
        tracing::warn!("closing a database connection that an error left inside a transaction");
    }
    Ok(clean)
}

/// PostgreSQL's ROLLBACK never fails for want of a transaction, and sqlx
/// lowers its depth when it queues one; a connection still inside a
/// transaction here is in a state nothing expects, so it is closed.
async fn postgres_is_reusable(
    conn: &mut PgConnection,
    _: PoolConnectionMetadata,
) -> Result<bool, sqlx::Error> {
    let clean = !conn.is_in_transaction();
    if !clean {
        tracing::warn!("closing a database connection left inside a transaction");
    }
    Ok(clean)
}

/// Whether writes commit, as far as this process knows: set when a write
/// request failed with 503, cleared when one succeeds or a full-size probe
/// commits.
#[derive(Debug, Default)]
pub struct WriteHealth {
    failing: AtomicBool,
}

impl WriteHealth {
    pub fn record(&self, committed: bool) {
        self.failing.store(!committed, Ordering::Relaxed);
    }

    /// Proves the database still commits writes, not just that it answers:
    /// a SQLite file on a full disk or a read-only PostgreSQL still answers
    /// pings. Rewrites one row of `write_probe`; after a failed write the row
    /// first takes a payload as large as the largest request body, so that
    /// "healthy" means a real write fits again, not just a tiny one.
    pub async fn probe(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        let probed = async {
            if self.failing.load(Ordering::Relaxed) {
                write_probe_row(db, Some(vec![0; MAX_BODY_BYTES])).await?;
            }
            write_probe_row(db, None).await
        };
        probed.await.inspect_err(remember_if_connection_lost)?;
        self.record(true);
        Ok(())
    }
}

async fn write_probe_row(db: &DatabaseConnection, filler: Option<Vec<u8>>) -> Result<(), DbErr> {
    let row = write_probe::ActiveModel {
        id: sea_orm::Set(1),
        checked_at: sea_orm::Set(Utc::now().trunc_subsecs(6)),
        filler: sea_orm::Set(filler),
    };
    write_probe::Entity::insert(row)
        .on_conflict(
            OnConflict::column(write_probe::Column::Id)
                .update_columns([write_probe::Column::CheckedAt, write_probe::Column::Filler])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// When a statement last failed because the server dropped its connection
/// (an outage, a restart, `pg_terminate_backend`), in nanoseconds since
/// [`SINCE`]; 0 for never.
///
/// Pooled connections are pinged only after sitting idle for a while, so
/// after the server dropped them all, each would fail one request of its own
/// once the database is back (a 10-connection pool: ten 503s, `/health`
/// among them). Instead, once one statement has lost its connection, every
/// connection that has been idle since then is pinged before its next use:
/// one round trip each, once.
static CONNECTION_LOST: AtomicU64 = AtomicU64::new(0);
static SINCE: LazyLock<Instant> = LazyLock::new(Instant::now);

fn nanos_since_start() -> u64 {
    u64::try_from(SINCE.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Whether a connection idle for `idle_for` has been idle since a statement
/// last lost its connection.
fn idle_since_a_lost_connection(idle_for: Duration) -> bool {
    let lost = CONNECTION_LOST.load(Ordering::Relaxed);
    let idle_since =
        nanos_since_start().saturating_sub(u64::try_from(idle_for.as_nanos()).unwrap_or(u64::MAX));
    lost != 0 && idle_since <= lost
}

fn remember_if_connection_lost(err: &DbErr) {
    if lost_connection(err) {
        CONNECTION_LOST.store(nanos_since_start().max(1), Ordering::Relaxed);
    }
}

/// True when the error means the server dropped the connection the
/// statement ran on: it was closed or reset, or the server terminated the
/// session (57P01-57P03) or reported a connection exception (class 08).
fn lost_connection(err: &DbErr) -> bool {
    let (DbErr::Exec(RuntimeErr::SqlxError(sqlx_err))
    | DbErr::Query(RuntimeErr::SqlxError(sqlx_err))) = err
    else {
        return false;
    };
    match sqlx_err.as_ref() {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db_err) => {
            let code = db_err.code();
            let code = code.as_deref().unwrap_or_default();
            code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
        }
        _ => false,
    }
}

/// A database error reaches the client as 503 when retrying can help, and
/// as 500 otherwise. Every request's database error passes here, which
/// makes it the place to notice a dropped connection (see
/// `CONNECTION_LOST`): SeaORM's statement callback is not told the error.
impl From<DbErr> for ApiError {
    fn from(err: DbErr) -> Self {
        remember_if_connection_lost(&err);
        if is_unavailable(&err) {
            Self::Unavailable(err)
        } else {
            Self::Internal(err.into())
        }
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
                // SQLITE_BUSY (5) and SQLITE_LOCKED (6): another writer;
                // SQLITE_READONLY (8), SQLITE_IOERR (10), SQLITE_FULL (13),
                // SQLITE_CANTOPEN (14): the file cannot take writes now (disk
                // full, read-only mount); with their extended codes.
                code.parse::<i32>()
                    .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 8 | 10 | 13 | 14))
            } else {
                // PostgreSQL: class 08 connection exception, 57P0x shutdown or
                // "cannot connect now", class 53 insufficient resources (disk
                // full, out of memory, too many connections), 58030 I/O
                // error, 25006 a read-only transaction (a standby, or
                // default_transaction_read_only), 57014 statement_timeout, 3D000
                // the database is gone.
                code.starts_with("08")
                    || code.starts_with("57P0")
                    || code.starts_with("53")
                    || matches!(code, "58030" | "25006" | "57014" | "3D000")
            }
        }
        _ => false,
    }
}
