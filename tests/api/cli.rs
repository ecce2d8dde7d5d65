//! The binary's subcommands and its configuration checks.

use std::process::{Command, Output};

use rstest::rstest;
use sea_orm::{ConnectionTrait, Statement};

use crate::helpers::{Backend, SECRET, send};
use crate::spawn_or_skip;

fn todo_api(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_todo-api"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn openapi_prints_the_committed_document() {
    let printed = stdout(&todo_api(&["openapi"], &[]));
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .unwrap();
    assert_eq!(printed, committed);
}

#[test]
fn bad_configuration_stops_with_a_message_naming_the_variable() {
    let cases = [
        ("PORT", "not-a-port"),
        ("HOST", "localhost:80"),
        ("DATABASE_URL", "mysql://db/todo"),
        ("BETTER_AUTH_SECRET", "short"),
        ("CORS_ORIGINS", "http://ok.example,not an origin"),
        ("RUN_MIGRATIONS", "perhaps"),
        ("LOG_FORMAT", "xml"),
        ("DATABASE_MAX_CONNECTIONS", "0"),
    ];
    for (variable, value) in cases {
        let output = todo_api(&["openapi"], &[(variable, value)]);
        assert!(
            !output.status.success(),
            "{variable}={value} must be rejected"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(variable),
            "{variable}: message names it: {stderr}"
        );
    }
}

#[tokio::test]
async fn token_mints_a_token_the_api_accepts() {
    let app = crate::helpers::TestApp::spawn(Backend::Sqlite)
        .await
        .unwrap();
    let token = stdout(&todo_api(
        &[
            "token",
            "--sub",
            "carol",
            "--email",
            "carol@example.com",
            "--ttl",
            "5m",
        ],
        &[("BETTER_AUTH_SECRET", SECRET)],
    ));
    let me = send(
        app.client
            .get("/api/carol/me")
            .header("authorization", format!("Bearer {}", token.trim())),
    )
    .await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["email"], "carol@example.com");

    let without_secret = todo_api(&["token", "--sub", "carol"], &[]);
    assert!(!without_secret.status.success());
    assert!(String::from_utf8_lossy(&without_secret.stderr).contains("BETTER_AUTH_SECRET"));
}

#[rstest]
#[tokio::test]
async fn migrate_subcommands_roll_back_report_and_reapply(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let app = spawn_or_skip!(backend);
    let env = [("DATABASE_URL", app.database_url.as_str())];
    let table_count = || async {
        let sql = match backend {
            Backend::Sqlite => {
                "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'tasks'"
            }
            Backend::Postgres => {
                "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = 'tasks'"
            }
        };
        let row = app
            .db
            .query_one_raw(Statement::from_string(app.db.get_database_backend(), sql))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    };

    assert!(stdout(&todo_api(&["migrate", "status"], &env)).contains("Applied"));
    stdout(&todo_api(&["migrate", "down"], &env));
    assert_eq!(table_count().await, 0);
    assert!(stdout(&todo_api(&["migrate", "status"], &env)).contains("Pending"));
    stdout(&todo_api(&["migrate", "up"], &env));
    assert_eq!(table_count().await, 1);
    stdout(&todo_api(&["migrate", "fresh"], &env));
    assert_eq!(table_count().await, 1);
}
