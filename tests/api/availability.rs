//! The database going away: clients get 503 problems (never a 500 or a hang),
//! and the service recovers by itself when the database is back.

use poem::http::StatusCode;
use rstest_reuse::apply;

use crate::helpers::both_backends;

use sea_orm::{ConnectionTrait, Database, sqlx::Connection};
use serde_json::json;

use crate::helpers::{Backend, TestApp, send};
use crate::spawn_or_skip;

#[apply(both_backends)]
#[tokio::test]
async fn health_reports_the_database(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let reply = send(app.client.get("/health")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({"status": "ok", "database": "ok"}));
}

/// PostgreSQL stops accepting connections to the database and drops the
/// open ones, as during a failover, then comes back.
#[tokio::test]
async fn postgres_outage_is_503_and_recovers_without_restart() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let alice = app.user("alice");
    let id = crate::helpers::id_of(&alice.create(json!({"title": "survives"})).await);
    // More pooled connections than requests during the outage: each of
    // them is dead afterwards, and none may fail a request once the
    // database is back.
    let lists: Vec<_> = (0..8).map(|_| alice.get("/tasks")).collect();
    for list in futures::future::join_all(lists).await {
        assert_eq!(list.status, StatusCode::OK);
    }
    let (admin_url, name) = app.postgres_database().unwrap();
    let admin = Database::connect(admin_url).await.unwrap();
    app.db.clone().close().await.ok();

    admin
        .execute_unprepared(&format!(
            r#"ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false"#
        ))
        .await
        .unwrap();
    admin
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .await
        .unwrap();

    let health = send(app.client.get("/health")).await;
    health.problem(StatusCode::SERVICE_UNAVAILABLE);
    let list = alice.get("/tasks").await;
    list.problem(StatusCode::SERVICE_UNAVAILABLE);
    assert!(list.header("retry-after").is_some());
    alice
        .post("/tasks", json!({"title": "during outage"}))
        .await
        .problem(StatusCode::SERVICE_UNAVAILABLE);

    admin
        .execute_unprepared(&format!(
            r#"ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true"#
        ))
        .await
        .unwrap();

    let health = send(app.client.get("/health")).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.body);
    let titles: Vec<_> = alice
        .all_tasks()
        .await
        .iter()
        .map(|t| t["title"].clone())
        .collect();
    assert_eq!(
        titles,
        [json!("survives")],
        "nothing lost, nothing half-written"
    );
    assert_eq!(alice.toggle(id).await.status, StatusCode::OK);
}

/// The server drops every connection of the pool while the database stays
/// up (a restart of a pooler, `pg_terminate_backend`): connections in the pool
/// are not pinged on every acquire, so a request may get 503, never a 500,
/// and the pool replaces the dead connections by itself.
#[tokio::test]
async fn postgres_dropping_pooled_connections_is_503_at_worst_and_heals() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let alice = app.user("alice");
    for n in 0..5 {
        alice.create(json!({"title": format!("task {n}")})).await;
    }
    let (admin_url, name) = app.postgres_database().unwrap();
    let admin = Database::connect(admin_url).await.unwrap();
    // Several rounds, so that the pool holds several connections to kill.
    for _ in 0..3 {
        let killed = admin
            .execute_unprepared(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            ))
            .await
            .unwrap();
        assert!(killed.rows_affected() > 0, "the pool had connections");
        let mut statuses = Vec::new();
        for _ in 0..6 {
            let list = alice.get("/tasks").await;
            if list.status == StatusCode::SERVICE_UNAVAILABLE {
                list.problem(StatusCode::SERVICE_UNAVAILABLE);
                assert!(list.header("retry-after").is_some());
            } else {
                assert_eq!(list.status, StatusCode::OK, "{}", list.body);
                assert_eq!(list.body["total"], 5);
            }
            statuses.push(list.status);
        }
        assert_eq!(
            statuses.last(),
            Some(&StatusCode::OK),
            "healed by itself: {statuses:?}"
        );
    }
    assert_eq!(alice.all_tasks().await.len(), 5, "nothing lost");
}

/// Another process holds SQLite's write lock longer than the busy timeout:
/// writes get 503, reads go on (WAL), and writes work again once released.
#[tokio::test]
async fn sqlite_write_lock_is_503_for_writers_and_recovers() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let alice = app.user("alice");
    alice.create(json!({"title": "before"})).await;

    let mut other_process = sea_orm::sqlx::SqliteConnection::connect(&app.database_url)
        .await
        .unwrap();
    sea_orm::sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut other_process)
        .await
        .unwrap();

    let write = alice.post("/tasks", json!({"title": "blocked"})).await;
    write.problem(StatusCode::SERVICE_UNAVAILABLE);
    assert!(write.header("retry-after").is_some());
    let read = alice.get("/tasks").await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.body["total"], 1);

    sea_orm::sqlx::raw_sql("ROLLBACK")
        .execute(&mut other_process)
        .await
        .unwrap();

    alice.create(json!({"title": "after"})).await;
    assert_eq!(app.stored_titles().await, ["before", "after"]);
}

/// SQLite reads have their own connections: a list is answered while a
/// write waits for the write lock, and the write completes once it is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reads_are_served_while_a_write_waits_for_the_lock() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.database_statement_timeout = std::time::Duration::from_secs(20);
    })
    .await
    .unwrap();
    let alice = app.user("alice");
    alice.create(json!({"title": "before"})).await;
    let lock = crate::helpers::hold_tasks_lock(Backend::Sqlite, &app.database_url).await;

    app.until_writes_are_done().await;
    let write = alice.post("/tasks", json!({"title": "waited for the lock"}));
    let read = async {
        app.until_a_write_waits().await;
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), alice.get("/tasks"))
            .await
            .expect("a read must not queue behind the waiting write");
        drop(lock);
        read
    };
    let (write, read) = tokio::join!(write, read);

    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.body["total"], 1);
    assert_eq!(read.body["items"][0]["title"], "before");
    assert_eq!(write.status, StatusCode::CREATED, "{}", write.body);
    assert_eq!(app.stored_titles().await, ["before", "waited for the lock"]);
}

/// Neon-style URLs carry `sslmode=require`: the service must connect over
/// TLS (rustls) and work as usual.
#[tokio::test]
async fn postgres_with_sslmode_require_connects_over_tls() {
    let Some(app) = TestApp::spawn_with(Backend::Postgres, |config| {
        config.database_url.push_str("?sslmode=require");
    })
    .await
    else {
        return;
    };
    let alice = app.user("alice");
    alice.create(json!({"title": "over TLS"})).await;
    assert_eq!(alice.all_tasks().await.len(), 1);

    let (admin_url, name) = app.postgres_database().unwrap();
    let admin = Database::connect(admin_url).await.unwrap();
    let row = admin
        .query_one_raw(sea_orm::Statement::from_string(
            admin.get_database_backend(),
            format!(
                "SELECT count(*) FILTER (WHERE s.ssl) AS tls \
                 FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.datname = '{name}' AND a.pid <> pg_backend_pid()"
            ),
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(
        row.try_get::<i64>("", "tls").unwrap() >= 1,
        "the app's connections use TLS"
    );
}
