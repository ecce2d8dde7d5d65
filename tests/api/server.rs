//! The real binary over a real socket: request logging with request ids, and
//! graceful shutdown that lets in-flight requests finish.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use rstest_reuse::apply;

use crate::helpers::both_backends;

use sea_orm::{ConnectionTrait, Database, EntityTrait};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::{Backend, SECRET, free_port};
use crate::process::until_read_by_server;
use crate::spawn_or_skip;

/// One HTTP/1.1 request on a fresh connection; returns the raw response.
async fn http(port: u16, request: String) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

async fn wait_until_listening(port: u16) {
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not start listening");
}

/// Waits until the server stops accepting connections, as it does first
/// when told to shut down.
async fn wait_until_not_listening(port: u16) {
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the server kept accepting after SIGTERM");
}

#[apply(both_backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish_and_every_request_is_logged(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let token = app.user("alice").token;
    let port = free_port();
    let server = Command::new(env!("CARGO_BIN_EXE_todo-api"))
        .arg("serve")
        .env_clear()
        .env("DATABASE_URL", &app.database_url)
        .env("BETTER_AUTH_SECRET", SECRET)
        .env("PORT", port.to_string())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_listening(port).await;

    // Hold a lock that makes the next create wait inside the server.
    let lock = crate::helpers::hold_tasks_lock(backend, &app.database_url).await;
    let body = json!({"title": "in flight"}).to_string();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream
        .write_all(
            format!(
                "POST /api/alice/tasks HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\nX-Request-Id: shutdown-test-1\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    until_read_by_server(&stream).await;
    let in_flight = tokio::spawn(async move {
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    });
    let terminated = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    wait_until_not_listening(port).await;
    drop(lock); // rolls back / releases: the waiting insert proceeds

    let response = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the in-flight request finished")
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("x-request-id: shutdown-test-1")
    );

    let output = tokio::task::spawn_blocking(move || server.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "clean exit after SIGTERM: {:?}",
        output.status
    );
    let logs = String::from_utf8_lossy(&output.stderr);
    let line: Value = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["operation"] == "createTask")
        .unwrap_or_else(|| panic!("a log line for the request in:\n{logs}"));
    assert_eq!(line["method"], "POST");
    assert_eq!(line["path"], "/api/alice/tasks");
    assert_eq!(line["status"], 201);
    assert!(line["latency_ms"].as_f64().is_some_and(|ms| ms > 0.0));
    assert_eq!(line["span"]["request_id"], "shutdown-test-1", "{line}");

    let stored = entity::task::Entity::find().all(&app.db).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].title, "in flight");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_json_logs_and_backtraces_on_a_500_is_one_json_line_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/todo.db?mode=rwc", dir.path().display());
    let port = free_port();
    let server = Command::new(crate::process::binary())
        .arg("serve")
        .env_clear()
        .env("DATABASE_URL", &database_url)
        .env("BETTER_AUTH_SECRET", SECRET)
        .env("PORT", port.to_string())
        .env("LOG_FORMAT", "json")
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_listening(port).await;
    let token = crate::helpers::token_for("alice");
    // A table taken away under the server: its next query fails (500).
    let db = Database::connect(&database_url).await.unwrap();
    db.execute_unprepared("DROP TABLE task_tags").await.unwrap();
    let response = http(
        port,
        format!(
            "GET /api/alice/tags HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
             Connection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 500"), "{response}");
    assert!(
        Command::new("kill")
            .args(["-TERM", &server.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let output = tokio::task::spawn_blocking(move || server.wait_with_output().unwrap())
        .await
        .unwrap();
    let logs = String::from_utf8_lossy(&output.stderr);
    for line in logs.lines() {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not a JSON event: {line}"
        );
    }
    let error = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|event| event["level"] == "ERROR")
        .expect("the 500 is logged");
    let cause = error["error"].as_str().unwrap();
    assert!(cause.contains("no such table: task_tags"), "{cause}");
    assert!(!cause.contains('\n'), "{cause}");
}
