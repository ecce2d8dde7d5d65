//! A first deploy with several replicas: instances started at the same moment
//! on one new database all migrate it safely and all come up.

use rstest_reuse::apply;

use crate::helpers::both_backends;

use crate::{
    helpers::Backend,
    process::{ServerProcess, send},
    spawn_or_skip,
};

#[apply(both_backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_started_together_on_a_new_database_all_come_up(backend: Backend) {
    // A database with no tables at all.
    let app = spawn_or_skip!(backend, |config| config.run_migrations = false);
    let servers =
        futures::future::join_all((0..4).map(|_| ServerProcess::start(&app.database_url, &[])))
            .await;

    let http = reqwest::Client::new();
    for server in &servers {
        let reply = send(http.get(server.url("/health"))).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    // Each migration was applied exactly once.
    use migration::MigratorTrait;
    use sea_orm::{ConnectionTrait, Statement};
    let rows = app
        .db
        .query_all_raw(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT version FROM seaql_migrations ORDER BY version",
        ))
        .await
        .unwrap();
    let versions: Vec<String> = rows
        .iter()
        .map(|row| row.try_get::<String>("", "version").unwrap())
        .collect();
    let mut unique = versions.clone();
    unique.dedup();
    assert_eq!(versions, unique);
    assert_eq!(versions.len(), migration::Migrator::migrations().len());
    for server in servers {
        server.stop().await;
    }
}
