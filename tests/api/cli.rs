//! The binary's subcommands and its configuration checks.

use std::process::{Command, Output};

use rstest_reuse::apply;

use crate::helpers::both_backends;

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
        ("BETTER_AUTH_URL", "app.example.com"),
        ("JWKS_URL", "ftp://keys.example.com/jwks"),
        ("JWT_LEEWAY_SECS", "-5"),
        ("JWKS_REFRESH_INTERVAL", "soon"),
        ("JWKS_UNKNOWN_KID_COOLDOWN", "30 parsecs"),
        ("TRASH_RETENTION", "0s"),
        ("CHANGES_RETENTION", "forever"),
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

#[test]
fn jwks_timings_under_a_second_are_refused() {
    for (variable, value) in [
        ("JWKS_REFRESH_INTERVAL", "0s"),
        ("JWKS_UNKNOWN_KID_COOLDOWN", "500ms"),
    ] {
        let output = todo_api(&["openapi"], &[(variable, value)]);
        assert!(
            !output.status.success(),
            "{variable}={value} must be rejected"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(variable) && stderr.contains("must be at least 1s"),
            "{variable}: {stderr}"
        );
    }
    let accepted = todo_api(
        &["openapi"],
        &[
            ("JWKS_REFRESH_INTERVAL", "1s"),
            ("JWKS_UNKNOWN_KID_COOLDOWN", "1s"),
        ],
    );
    stdout(&accepted);
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

#[tokio::test]
async fn tokens_carry_the_configured_issuer_and_audience_which_the_api_then_requires() {
    let app = crate::helpers::TestApp::spawn_with(Backend::Sqlite, |config| {
        config.jwt_issuer = Some("https://auth.example.com".into());
        config.jwt_audience = vec!["todo-api".into(), "other".into()];
    })
    .await
    .unwrap();
    let token = stdout(&todo_api(
        &["token", "--sub", "dave"],
        &[
            ("BETTER_AUTH_SECRET", SECRET),
            ("JWT_ISSUER", "https://auth.example.com"),
            ("JWT_AUDIENCE", "todo-api,other"),
        ],
    ));
    let list = |token: String| {
        send(
            app.client
                .get("/api/dave/tasks")
                .header("authorization", format!("Bearer {}", token.trim())),
        )
    };
    let reply = list(token).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // The same secret without the claims the server now expects is refused
    // (naming `iss` or `aud`, whichever is checked first).
    let plain = app.user("dave").token;
    let reply = list(plain).await;
    let detail = reply.problem(poem::http::StatusCode::UNAUTHORIZED)["detail"]
        .as_str()
        .unwrap();
    assert!(
        detail == "token has no `iss` claim" || detail == "token has no `aud` claim",
        "{detail}"
    );
}

#[tokio::test]
async fn an_app_with_no_way_to_verify_tokens_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}/todo.db?mode=rwc", dir.path().display());
    let Err(err) = todo_api::app::build_app(&todo_api::config::Config::new(database)).await else {
        panic!("built an app that cannot verify any token");
    };
    let message = err.to_string();
    assert!(
        message.contains("BETTER_AUTH_URL") && message.contains("BETTER_AUTH_SECRET"),
        "{message}"
    );
}

#[tokio::test]
async fn a_change_feed_that_forgets_deletions_before_the_trash_purges_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}/todo.db?mode=rwc", dir.path().display());
    let mut config = todo_api::config::Config::new(database);
    config.better_auth_secret = Some("a-secret-of-at-least-32-bytes-long!".into());
    config.trash_retention = std::time::Duration::from_secs(7 * 24 * 3600);
    config.changes_retention = std::time::Duration::from_secs(24 * 3600);
    let Err(err) = todo_api::app::build_app(&config).await else {
        panic!("a purge could go unreported to clients syncing within CHANGES_RETENTION");
    };
    let message = err.to_string();
    assert!(
        message.contains("CHANGES_RETENTION (1day) must be at least TRASH_RETENTION (7days)"),
        "{message}"
    );
}

#[test]
fn serve_with_only_better_auth_url_uses_the_jwks_and_prints_no_demo_token() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}/todo.db?mode=rwc", dir.path().display());
    let mut server = Command::new(env!("CARGO_BIN_EXE_todo-api"))
        .env_clear()
        .env("DATABASE_URL", &database)
        .env("BETTER_AUTH_URL", "http://127.0.0.1:9")
        .env("PORT", crate::helpers::free_port().to_string())
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(server.stderr.take().unwrap());
    let mut seen = String::new();
    for line in std::io::BufRead::lines(stderr) {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("serving") {
            break;
        }
    }
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(seen.contains("\"hs256\":false"), "{seen}");
    assert!(seen.contains("http://127.0.0.1:9/api/auth/jwks"), "{seen}");
    assert!(!seen.contains("Demo token"), "{seen}");
}

#[apply(both_backends)]
#[tokio::test]
async fn migrate_subcommands_roll_back_report_and_reapply(backend: Backend) {
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
    // Every migration rolled back: the first one drops the tables.
    let migrations = stdout(&todo_api(&["migrate", "status"], &env))
        .lines()
        .count();
    stdout(&todo_api(
        &["migrate", "down", "-n", &migrations.to_string()],
        &env,
    ));
    assert_eq!(table_count().await, 0);
    assert!(stdout(&todo_api(&["migrate", "status"], &env)).contains("Pending"));
    stdout(&todo_api(&["migrate", "up"], &env));
    assert_eq!(table_count().await, 1);
    stdout(&todo_api(&["migrate", "fresh"], &env));
    assert_eq!(table_count().await, 1);
}

/// Every setting is in the README's table and in `.env.example`, so a new
/// one cannot ship undocumented.
#[test]
fn every_setting_is_documented_in_the_readme_and_the_example_env() {
    use clap::Args;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let example = std::fs::read_to_string(root.join(".env.example")).unwrap();
    let settings = todo_api::config::Config::augment_args(clap::Command::new("todo-api"));
    let mut missing = Vec::new();
    for argument in settings.get_arguments() {
        let Some(variable) = argument.get_env().and_then(|name| name.to_str()) else {
            continue;
        };
        let in_table = readme
            .lines()
            .any(|line| line.starts_with("| `") && line.contains(&format!("`{variable}`")));
        if !in_table {
            missing.push(format!("{variable} in README.md's settings table"));
        }
        if !example.contains(&format!("{variable}=")) {
            missing.push(format!("{variable} in .env.example"));
        }
    }
    assert!(missing.is_empty(), "undocumented settings: {missing:#?}");
}
