//! Slow, idle and greedy clients cannot hold the service: each timeout and
//! limit over a real socket to the real binary, with short values.

use rstest_reuse::apply;

use crate::helpers::both_backends;
use std::{
    process::Command,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    helpers::Backend,
    process::{ServerProcess, until_read_by_server},
    spawn_or_skip,
};

const GET_HEALTH: &str = "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";

async fn sqlite_server(env: &[(&str, &str)]) -> (tempfile::TempDir, ServerProcess) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/todo.db?mode=rwc", dir.path().display());
    let server = ServerProcess::start(&url, env).await;
    (dir, server)
}

async fn connect(server: &ServerProcess) -> TcpStream {
    TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap()
}

/// Reads until the server closes the connection; returns what it sent and
/// when it closed. Fails the test if it stays open past `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await {
            Err(_) => panic!(
                "still open after {limit:?}; received {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

/// Reads one response head and its `Content-Length` body from a kept-alive connection.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("a response within 5 s")
            .unwrap();
        assert!(n > 0, "closed before a whole response");
        received.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if received.len() >= head_end + 4 + length {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn a_connection_that_sends_nothing_or_dribbles_its_headers_is_closed_after_the_header_timeout()
 {
    let (_dir, server) = sqlite_server(&[("HEADER_TIMEOUT", "1s")]).await;

    let mut silent = connect(&server).await;
    let (_, after) = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(
        after >= Duration::from_millis(900),
        "closed too early: {after:?}"
    );

    // One byte every 200 ms: the whole head would take ~8 s.
    let mut slow = connect(&server).await;
    let started = Instant::now();
    for byte in GET_HEALTH.bytes() {
        if slow.write_all(&[byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if started.elapsed() > Duration::from_secs(4) {
            panic!("the server kept reading a head for 4 s");
        }
    }
    let (response, _) = read_until_closed(&mut slow, Duration::from_secs(2)).await;
    assert!(!response.contains("200 OK"), "a dribbled head was served");

    // A well-behaved client is still served.
    let mut client = connect(&server).await;
    client.write_all(GET_HEALTH.as_bytes()).await.unwrap();
    assert!(read_response(&mut client).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_lives_for_the_keep_alive_timeout_then_is_closed() {
    let (_dir, server) =
        sqlite_server(&[("HEADER_TIMEOUT", "1s"), ("KEEP_ALIVE_TIMEOUT", "3s")]).await;
    let mut client = connect(&server).await;
    client.write_all(GET_HEALTH.as_bytes()).await.unwrap();
    assert!(read_response(&mut client).await.starts_with("HTTP/1.1 200"));

    // Idle for longer than the header timeout: still open, still served.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    client.write_all(GET_HEALTH.as_bytes()).await.unwrap();
    assert!(read_response(&mut client).await.starts_with("HTTP/1.1 200"));

    // Idle past the keep-alive timeout: closed.
    let (_, after) = read_until_closed(&mut client, Duration::from_secs(6)).await;
    assert!(
        after >= Duration::from_millis(2800),
        "closed too early: {after:?}"
    );
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_a_408_problem_and_the_connection_is_closed() {
    let (_dir, server) = sqlite_server(&[("BODY_TIMEOUT", "1s")]).await;
    let mut client = connect(&server).await;
    let token = crate::helpers::token_for("alice");
    let head = format!(
        "POST /api/alice/tasks HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    client.write_all(head.as_bytes()).await.unwrap();
    let (response, after) = read_until_closed(&mut client, Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(after < Duration::from_secs(3));
    let lower = response.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: application/problem+json"),
        "{response}"
    );
    assert!(lower.contains("connection: close"), "{response}");
    assert!(lower.contains("x-request-id:"), "{response}");
    assert!(response.contains(r#""status":408"#), "{response}");
}

#[tokio::test]
async fn a_body_that_arrives_in_pieces_within_the_timeout_is_served_and_the_connection_kept() {
    let (_dir, server) = sqlite_server(&[("BODY_TIMEOUT", "2s")]).await;
    let mut client = connect(&server).await;
    let token = crate::helpers::token_for("alice");
    let body = r#"{"title":"sent in pieces","tags":["slow"]}"#;
    let head = format!(
        "POST /api/alice/tasks HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    client.write_all(head.as_bytes()).await.unwrap();
    for piece in body.as_bytes().chunks(15) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        client.write_all(piece).await.unwrap();
    }
    let created = read_response(&mut client).await;
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
    assert!(
        created.contains(r#""title":"sent in pieces""#) && created.contains(r#""tags":["slow"]"#),
        "{created}"
    );

    let list = format!(
        "GET /api/alice/tasks HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    client.write_all(list.as_bytes()).await.unwrap();
    let listed = read_response(&mut client).await;
    assert!(listed.starts_with("HTTP/1.1 200"), "{listed}");
    assert!(listed.contains(r#""total":1"#), "{listed}");
}

#[tokio::test]
async fn oversized_headers_are_431_and_a_too_large_body_says_connection_close() {
    let (_dir, server) = sqlite_server(&[]).await;

    for size in [20 * 1024, 400 * 1024] {
        let mut client = connect(&server).await;
        let request = format!(
            "GET /health HTTP/1.1\r\nHost: localhost\r\nX-Padding: {}\r\n\r\n",
            "a".repeat(size)
        );
        // The server may close before reading it all.
        let _ = client.write_all(request.as_bytes()).await;
        let (response, _) = read_until_closed(&mut client, Duration::from_secs(5)).await;
        assert!(response.starts_with("HTTP/1.1 431"), "{size}: {response}");
    }

    // Just under the limit is served.
    let mut client = connect(&server).await;
    let request = format!(
        "GET /health HTTP/1.1\r\nHost: localhost\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(12 * 1024)
    );
    client.write_all(request.as_bytes()).await.unwrap();
    assert!(read_response(&mut client).await.starts_with("HTTP/1.1 200"));

    // A declared body over 64 KiB: 413 at once, and the client is told the
    // connection ends, so it does not send its next request into a closed socket.
    let mut client = connect(&server).await;
    client
        .write_all(
            b"POST /api/alice/tasks HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
              Content-Length: 100000\r\n\r\n",
        )
        .await
        .unwrap();
    let (response, _) = read_until_closed(&mut client, Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );
}

#[tokio::test]
async fn cleartext_http2_is_refused() {
    let (_dir, server) = sqlite_server(&[]).await;
    let mut client = connect(&server).await;
    // The HTTP/2 connection preface, then a SETTINGS frame.
    client
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let (response, _) = read_until_closed(&mut client, Duration::from_secs(5)).await;
    assert!(
        response.is_empty() || response.starts_with("HTTP/1.1 505"),
        "{response}"
    );
}

#[tokio::test]
async fn beyond_max_connections_new_connections_wait_until_one_is_free() {
    let (_dir, server) = sqlite_server(&[("MAX_CONNECTIONS", "2")]).await;
    let mut first = connect(&server).await;
    first.write_all(GET_HEALTH.as_bytes()).await.unwrap();
    assert!(read_response(&mut first).await.starts_with("HTTP/1.1 200"));
    // Accepted before the third: the listen queue is first in, first out.
    let _second = connect(&server).await;

    let mut third = connect(&server).await;
    third.write_all(GET_HEALTH.as_bytes()).await.unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf))
            .await
            .is_err(),
        "a third connection was served beyond MAX_CONNECTIONS=2"
    );
    drop(first);
    assert!(read_response(&mut third).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn at_the_open_files_limit_the_server_waits_instead_of_spinning_and_serves_again() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/todo.db?mode=rwc", dir.path().display());
    // A hard limit of 128 open files, which the server cannot raise.
    let mut command = Command::new("prlimit");
    command
        .arg("--nofile=128:128")
        .arg("--")
        .arg(crate::process::binary());
    let server = ServerProcess::start_with(command, &url, &[]).await;

    let mut held = Vec::new();
    for _ in 0..200 {
        held.push(connect(&server).await);
    }
    let cpu_before = cpu_time(server.child.id());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let busy = cpu_time(server.child.id()) - cpu_before;
    assert!(
        busy < Duration::from_millis(500),
        "{busy:?} of CPU in 2 s while full"
    );

    drop(held);
    let mut client = connect(&server).await;
    client.write_all(GET_HEALTH.as_bytes()).await.unwrap();
    assert!(read_response(&mut client).await.starts_with("HTTP/1.1 200"));
}

/// User + system CPU time of a process so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

#[tokio::test]
async fn sigterm_closes_idle_and_stalled_connections_at_once() {
    let (_dir, server) = sqlite_server(&[]).await;
    let mut idle = connect(&server).await;
    idle.write_all(GET_HEALTH.as_bytes()).await.unwrap();
    assert!(read_response(&mut idle).await.starts_with("HTTP/1.1 200"));
    let mut partial_head = connect(&server).await;
    partial_head
        .write_all(b"GET /health HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let mut partial_body = connect(&server).await;
    partial_body
        .write_all(
            b"POST /api/alice/tasks HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
    until_read_by_server(&partial_head).await;
    until_read_by_server(&partial_body).await;

    let started = Instant::now();
    server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown waited {:?} for slow clients",
        started.elapsed()
    );
    for stream in [&mut idle, &mut partial_head, &mut partial_body] {
        read_until_closed(stream, Duration::from_secs(1)).await;
    }
}

#[apply(both_backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_stuck_on_a_database_lock_gets_503_within_the_deadline(backend: Backend) {
    let app = spawn_or_skip!(backend, |config| {
        config.request_timeout = Duration::from_secs(1);
        config.database_statement_timeout = Duration::from_secs(20);
    });
    let alice = app.user("alice");
    alice
        .create(serde_json::json!({"title": "before the lock"}))
        .await;
    let _lock = crate::helpers::hold_tasks_lock(backend, &app.database_url).await;
    let started = Instant::now();
    let reply = alice
        .post("/tasks", serde_json::json!({"title": "blocked"}))
        .await;
    let body = reply.problem(poem::http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["detail"].as_str().unwrap().contains("longer than 1 s"),
        "{body}"
    );
    assert!(reply.header("retry-after").is_some());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[apply(both_backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_waiting_past_the_statement_timeout_is_503(backend: Backend) {
    let app = spawn_or_skip!(backend, |config| {
        config.database_statement_timeout = Duration::from_millis(500);
    });
    let alice = app.user("alice");
    let task = alice
        .create(serde_json::json!({"title": "before the lock"}))
        .await;
    let _lock = crate::helpers::hold_tasks_lock(backend, &app.database_url).await;
    let started = Instant::now();
    let reply = alice
        .patch(
            &format!("/tasks/{}", crate::helpers::id_of(&task)),
            serde_json::json!({"title": "blocked"}),
        )
        .await;
    reply.problem(poem::http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.header("retry-after").is_some());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop(_lock);
    let stored = app.stored_task(crate::helpers::id_of(&task)).await.unwrap();
    assert_eq!(stored.title, "before the lock");
}

/// With every in-flight slot taken, the next request waits its turn instead
/// of running alongside: here the only slot is held by a write stuck on a
/// lock, and a list sent after it is answered only once the write is done,
/// so it sees the write's task.
#[apply(both_backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_requests_in_flight_a_request_waits_for_a_slot_then_is_served(backend: Backend) {
    let app = spawn_or_skip!(backend, |config| {
        config.max_requests_in_flight = 1;
        config.database_statement_timeout = Duration::from_secs(20);
    });
    let alice = app.user("alice");
    alice
        .create(serde_json::json!({"title": "before the lock"}))
        .await;
    let lock = crate::helpers::hold_tasks_lock(backend, &app.database_url).await;

    app.until_writes_are_done().await;
    let first = alice.post("/tasks", serde_json::json!({"title": "first in"}));
    let second = async {
        app.until_a_write_waits().await;
        let mut list = std::pin::pin!(alice.get("/tasks"));
        let early = tokio::time::timeout(Duration::from_millis(300), &mut list).await;
        assert!(early.is_err(), "served while the only slot was taken");
        drop(lock);
        list.await
    };
    let (first, second) = tokio::join!(first, second);

    assert_eq!(
        first.status,
        poem::http::StatusCode::CREATED,
        "{}",
        first.body
    );
    assert_eq!(second.status, poem::http::StatusCode::OK, "{}", second.body);
    let titles: Vec<_> = second.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|task| task["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["first in", "before the lock"]);
}
